"""Helpers for the payments tests: published events and in-process delivery of our handlers."""

from __future__ import annotations

from uuid import UUID

from domain_events.executor import Report
from domain_events.models import StoredEvent
from testsupport.outbox import run_deliveries_now


def published(event_type: str, order_id: UUID) -> list[StoredEvent]:
    """The stored events of one type about one order, oldest first."""
    return list(StoredEvent.objects.filter(type=event_type, aggregate_id=order_id).order_by("id"))


def run_deliveries(handler: str) -> Report:
    """Run, here and now, every open delivery of `handler`, as a relay or a worker would."""
    return run_deliveries_now(handler)
