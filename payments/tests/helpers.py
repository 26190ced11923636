"""Helpers for the payments tests: published events and in-process delivery of our handlers."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from django.utils import timezone

from domain_events.dispatch import Report, claim_due, execute
from domain_events.models import Delivery, StoredEvent


def published(event_type: str, order_id: UUID) -> list[StoredEvent]:
    """The stored events of one type about one order, oldest first."""
    return list(StoredEvent.objects.filter(type=event_type, aggregate_id=order_id).order_by("id"))


def run_deliveries(handler: str) -> Report:
    """Run, here and now, every open delivery of `handler`, as a relay or a worker would."""
    Delivery.objects.filter(handler=handler, status__in=Delivery.OPEN).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    claims = [claim for claim in claim_due(1000) if claim.handler == handler]
    return execute(claims)
