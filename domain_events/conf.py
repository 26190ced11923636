"""The backbone's settings (`DOMAIN_EVENTS` in settings.py) with their defaults."""

from datetime import timedelta
from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    "DISPATCH_ON_COMMIT": True,
    "DISPATCH_GRACE": timedelta(seconds=10),
    "LEASE": timedelta(seconds=60),
    "CELERY_LEASE": timedelta(minutes=5),
    "ORDERING_WAIT": timedelta(seconds=1),
    "RELAY_BATCH_SIZE": 100,
    "RELAY_POLL_INTERVAL": 1.0,
    "RELAY_GATHER": 0.02,
    "DELIVERY_RETENTION": timedelta(days=7),
    "RETRY_JITTER": 0.2,
    "NOTIFY_CHANNEL": "shelfwise_outbox",
}


def domain_events_settings() -> dict[str, Any]:
    return {**DEFAULTS, **getattr(settings, "DOMAIN_EVENTS", {})}


def retry_schedule() -> tuple[int, ...]:
    return tuple(settings.HANDLER_RETRY_SCHEDULE)
