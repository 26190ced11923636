"""Request correlation: `X-Request-ID` in, the same id out, and on every event and log line in
between; and the request's actor, its authenticated user, on every event it publishes."""

import logging
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from core.log_context import log_scope
from domain_events.actors import actor_of
from domain_events.context import clean_correlation_id, traced

HEADER = "X-Request-ID"
QUIET_PATHS = ("/healthz", "/readyz", "/metrics")  # probed every few seconds: not worth a line each

logger = logging.getLogger(__name__)


class CorrelationIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        correlation_id = clean_correlation_id(request.headers.get(HEADER))
        request.correlation_id = correlation_id
        started = time.monotonic()
        # The user is known only once authenticated (the session's by Django's middleware, a token's
        # by the API view, which sets `request.user` too): read when an event is published.
        actor = lambda: actor_of(getattr(request, "user", None))  # noqa: E731
        with traced(correlation_id, actor=actor), log_scope(correlation_id=correlation_id):
            response = self.get_response(request)
            if not request.path.startswith(QUIET_PATHS):
                # Logged inside the scope: the line also carries the tenant the request authenticated as.
                elapsed_ms = (time.monotonic() - started) * 1000
                logger.info("%s %s %s %.0fms", request.method, request.path, response.status_code, elapsed_ms)
        response[HEADER] = correlation_id
        return response
