"""Celery entry points: thin, they call the worker's batch (`batches`) and the hand-off."""

from datetime import datetime
from uuid import UUID

from celery import shared_task

from domain_events.batches import run_batch
from domain_events.claims import Claim
from domain_events.conf import domain_events_settings
from domain_events.fastpath import hand_on_follow_ups
from domain_events.probes import queue_reached

_TIME_LIMIT = domain_events_settings()["CELERY_TIME_LIMIT"]


@shared_task(
    name="domain_events.run_delivery",
    acks_late=True,
    ignore_result=True,
    soft_time_limit=_TIME_LIMIT.total_seconds() * 0.8,
    time_limit=_TIME_LIMIT.total_seconds(),
)
def run_delivery(
    delivery_id: int,
    token: str,
    handler: str | None = None,
    sent_at: str | None = None,
    more: list[tuple] | None = None,
    recorded_at: str | None = None,
) -> dict[str, int]:
    """Run a batch of one handler's deliveries: the one named, those in `more` (id, lease token and
    event's `recorded_at` each), and under backlog others of the same handler still queued
    (`batches`). Retries are not Celery's: a failure is rescheduled on the delivery record and a
    relay sends the task again when it is due.

    `recorded_at` (and the third item of each of `more`) is the event's, the deliveries' partition
    key; a message sent without it is run by the ids alone.

    Every row is re-read under its lease token: a stale message (its leases taken over, or its
    deliveries finished) does nothing.
    """
    name = handler or ""
    own = [_claim(name, delivery_id, token, recorded_at), *(_claim(name, *item) for item in more or ())]
    report = hand_on_follow_ups(run_batch(handler, own, _moment(sent_at)))
    if not report.handled:
        return {"stale": len(own)}
    return {"succeeded": report.succeeded, "failed": report.failed, "dead": report.dead, "waiting": report.waiting}


def _claim(handler: str, delivery_id: int, token: str, recorded_at: str | None = None) -> Claim:
    return Claim(delivery_id, UUID(token), handler, event_recorded_at=_moment(recorded_at))


def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@shared_task(name="domain_events.mark_queue", ignore_result=True)
def mark_queue(queue: str, sent_at: str) -> None:
    """A probe: it reached a worker, so whatever was sent before it on `queue` and is still
    unstarted was lost."""
    queue_reached(queue, datetime.fromisoformat(sent_at))
