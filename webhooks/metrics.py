"""Prometheus metrics of the webhooks module (see `domain_events.metrics` for multiprocess)."""

from prometheus_client import Histogram

WEBHOOK_REQUESTS = Histogram(
    "shelfwise_webhook_request_seconds",
    "Webhook POSTs by endpoint and outcome (2xx, 4xx, 5xx, error: no answer), with their latency.",
    ["endpoint", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def outcome_of(status_code: int | None) -> str:
    return f"{status_code // 100}xx" if status_code else "error"
