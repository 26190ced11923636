"""Request correlation: `X-Request-ID` in, the same id out, and on every event in between."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from domain_events.context import clean_correlation_id, traced

HEADER = "X-Request-ID"


class CorrelationIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        correlation_id = clean_correlation_id(request.headers.get(HEADER))
        request.correlation_id = correlation_id
        with traced(correlation_id):
            response = self.get_response(request)
        response[HEADER] = correlation_id
        return response
