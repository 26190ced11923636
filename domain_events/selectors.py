"""Reads of the outbox that modules share."""

from __future__ import annotations

from uuid import UUID

from django.db.models import Prefetch

from domain_events.models import Delivery, StoredEvent


def aggregate_timeline(*, tenant_id: UUID, aggregate_id: UUID) -> list[StoredEvent]:
    """Every committed event of one aggregate in position order, with the deliveries still on record
    (by handler); empty for another tenant's aggregate or an unknown one."""
    return list(
        StoredEvent.objects.filter(tenant_id=tenant_id, aggregate_id=aggregate_id)
        .order_by("position")
        .prefetch_related(Prefetch("deliveries", queryset=Delivery.objects.order_by("handler")))
    )
