"""Celery entry points: thin, they call the executor and the hand-off."""

from datetime import datetime
from uuid import UUID

from celery import shared_task

from domain_events.claims import Claim
from domain_events.conf import domain_events_settings
from domain_events.executor import execute
from domain_events.fastpath import hand_on_follow_ups
from domain_events.handoff import delivery_start
from domain_events.probes import queue_reached
from domain_events.subscriptions import subscriptions

_TIME_LIMIT = domain_events_settings()["CELERY_TIME_LIMIT"]


@shared_task(
    name="domain_events.run_delivery",
    acks_late=True,
    ignore_result=True,
    soft_time_limit=_TIME_LIMIT.total_seconds() * 0.8,
    time_limit=_TIME_LIMIT.total_seconds(),
)
def run_delivery(
    delivery_id: int, token: str, handler: str | None = None, sent_at: str | None = None
) -> dict[str, int]:
    """Run one delivery. Retries are not Celery's: a failure is rescheduled on the delivery record
    and a relay sends the task again when it is due.

    An atomic handler runs in one transaction with its record, under the row's lock: the lease
    token is checked there, and a stale message does nothing. Other handlers (and messages of
    older senders, which name no handler) are stamped as started first.
    """
    subscription = subscriptions.get(handler) if handler else None
    if subscription is not None and subscription.atomic:
        if sent_at:
            queue_reached(subscription.celery_queue, datetime.fromisoformat(sent_at), throttled=True)
        claim = Claim(delivery_id, UUID(token), handler)
    else:
        claim = delivery_start(delivery_id, UUID(token))
        if claim is None:
            return {"stale": 1}
    report = hand_on_follow_ups(execute([claim]))
    if not report.handled:
        return {"stale": 1}
    return {"succeeded": report.succeeded, "failed": report.failed, "dead": report.dead, "waiting": report.waiting}


@shared_task(name="domain_events.mark_queue", ignore_result=True)
def mark_queue(queue: str, sent_at: str) -> None:
    """A probe: it reached a worker, so whatever was sent before it on `queue` and is still
    unstarted was lost."""
    queue_reached(queue, datetime.fromisoformat(sent_at))
