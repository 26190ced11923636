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
    more: list[tuple[int, str]] | None = None,
) -> dict[str, int]:
    """Run a batch of one handler's deliveries: the one named, those in `more` (id and lease token
    each), and under backlog others of the same handler still queued (`batches`). Retries are not
    Celery's: a failure is rescheduled on the delivery record and a relay sends the task again when
    it is due.

    Every row is re-read under its lease token: a stale message (its leases taken over, or its
    deliveries finished) does nothing.
    """
    name = handler or ""
    own = [Claim(delivery_id, UUID(token), name)] + [Claim(pk, UUID(t), name) for pk, t in more or ()]
    report = hand_on_follow_ups(run_batch(handler, own, datetime.fromisoformat(sent_at) if sent_at else None))
    if not report.handled:
        return {"stale": len(own)}
    return {"succeeded": report.succeeded, "failed": report.failed, "dead": report.dead, "waiting": report.waiting}


@shared_task(name="domain_events.mark_queue", ignore_result=True)
def mark_queue(queue: str, sent_at: str) -> None:
    """A probe: it reached a worker, so whatever was sent before it on `queue` and is still
    unstarted was lost."""
    queue_reached(queue, datetime.fromisoformat(sent_at))
