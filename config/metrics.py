"""`/metrics` in the Prometheus text format, and the latency of every request by view.

Without `PROMETHEUS_MULTIPROC_DIR`, `/metrics` shows this process's counters; with it (set for
every process of the machine before they start: gunicorn workers, Celery workers, relays), it adds
up the counters that all of them wrote there. The database gauges (`BackboneCollector`) come last,
read at scrape time and cached for `METRICS_CACHE_SECONDS`, and the read replica's health and lag
(`ReplicaCollector`, with `DATABASE_REPLICA_URL`).
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector

from core.replica import ReplicaCollector
from domain_events.metrics import BackboneCollector

REQUESTS = Histogram(
    "shelfwise_http_request_seconds",
    "HTTP requests by view (URL name), method and status class, with their latency.",
    ["view", "method", "status"],
)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_database = CollectorRegistry(auto_describe=False)
_database.register(BackboneCollector())
_database.register(ReplicaCollector())


def metrics(request: HttpRequest) -> HttpResponse:
    """The figures, to whoever `METRICS_TOKEN` and `METRICS_ALLOWED_NETWORKS` let in."""
    refused = _refusal(request)
    if refused is not None:
        return refused
    if settings.PROMETHEUS_MULTIPROC_DIR:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=settings.PROMETHEUS_MULTIPROC_DIR)
    else:
        registry = REGISTRY
    return HttpResponse(generate_latest(registry) + generate_latest(_database), content_type=CONTENT_TYPE_PLAIN_0_0_4)


def _refusal(request: HttpRequest) -> HttpResponse | None:
    """401 without the bearer token `METRICS_TOKEN` (as Prometheus' `authorization` sends it), 403
    from an address outside `METRICS_ALLOWED_NETWORKS`; None when the scrape may go ahead."""
    networks = settings.METRICS_ALLOWED_NETWORKS
    if networks:
        try:
            address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
        except ValueError:
            address = None
        if address is None or not any(address in network for network in networks):
            return HttpResponse("Forbidden\n", status=403, content_type="text/plain")
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            response = HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    return None


class RequestMetricsMiddleware:
    """Times every request; labelled by the URL's name, so ids in paths make no new series."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = request.resolver_match
        view = (match.view_name or match.url_name or "unnamed") if match else "unmatched"
        method = request.method if request.method in METHODS else "other"
        status = f"{response.status_code // 100}xx"
        REQUESTS.labels(view, method, status).observe(time.perf_counter() - started)
        return response
