"""The backbone's settings (`DOMAIN_EVENTS` in settings.py) with their defaults."""

from datetime import timedelta
from typing import Any

from django.conf import settings

from domain_events.retry import RetryPolicy

DEFAULTS: dict[str, Any] = {
    "DISPATCH_ON_COMMIT": True,
    # With dispatch on commit: the publisher also runs its in-process handlers (off: the relays do).
    "RUN_ON_COMMIT": False,
    "DISPATCH_GRACE": timedelta(seconds=10),
    # New work is refused while the oldest never-attempted delivery is older than this (0: never).
    "ADMISSION_MAX_BACKLOG": timedelta(0),
    "LEASE": timedelta(seconds=20),
    # A sent Celery message still unstarted after this is checked for loss (see `handoff`).
    "CELERY_SEND_CHECK": timedelta(seconds=15),
    # The hard time limit of a Celery delivery task; a started one is the worker's for a little longer.
    "CELERY_TIME_LIMIT": timedelta(seconds=30),
    "CELERY_RUN_LEASE": timedelta(seconds=40),
    # The most deliveries of one handler a Celery task runs: one when the queue is idle, up to this
    # under backlog (`batches`).
    "CELERY_BATCH": 50,
    # How long a handler may run in a relay's or a worker's batch before it fails (None: no limit).
    "HANDLER_TIME_LIMIT": timedelta(seconds=30),
    # Past this a relay sends an unstarted Celery message again, proof of loss or not.
    "CELERY_LEASE": timedelta(minutes=5),
    "RELAY_BATCH_SIZE": 100,
    "RELAY_POLL_INTERVAL": 1.0,
    "RELAY_GATHER": 0.02,
    "READER_POLL_INTERVAL": 0.02,
    "READER_HELD_WARNING": timedelta(seconds=30),
    "DELIVERY_RETENTION": timedelta(days=7),
    "DEAD_LETTER_RETENTION": timedelta(days=30),
    "ORPHAN_RETENTION": timedelta(days=30),
    "RETRY_JITTER": 0.2,
    "NOTIFY_CHANNEL": "shelfwise_outbox",
}


def domain_events_settings() -> dict[str, Any]:
    return {**DEFAULTS, **getattr(settings, "DOMAIN_EVENTS", {})}


def retry_schedule() -> tuple[int, ...]:
    return tuple(settings.HANDLER_RETRY_SCHEDULE)


def handler_retry_policy(handler: str | None = None) -> RetryPolicy:
    """How a handler's deliveries (or, with no handler, the position readers) retry: the
    subscription's own schedule if it has one, else `HANDLER_RETRY_SCHEDULE`."""
    from domain_events.subscriptions import subscriptions

    subscription = subscriptions.get(handler) if handler else None
    tracker = subscriptions.tracker(handler) if handler and subscription is None else None
    own = (subscription.retry_schedule if subscription else None) or (tracker.retry_schedule if tracker else None)
    return RetryPolicy.of(own or retry_schedule(), domain_events_settings()["RETRY_JITTER"])
