"""Celery entry point for `celery`-mode handlers: one task per (event, handler)."""

from uuid import UUID

from celery import shared_task

from domain_events.dispatch import execute
from domain_events.outbox import Claim


@shared_task(name="domain_events.run_delivery", acks_late=True, ignore_result=True)
def run_delivery(delivery_id: int, token: str) -> dict[str, int]:
    """Run one delivery. Retries are not Celery's: a failure is rescheduled on the delivery record
    and a relay sends the task again when it is due."""
    report = execute([Claim(delivery_id, UUID(token), handler="")])
    return {"succeeded": report.succeeded, "failed": report.failed, "dead": report.dead, "waiting": report.waiting}
