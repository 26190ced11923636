"""Reads of the outbox that modules share."""

from __future__ import annotations

from uuid import UUID

from django.db.models import Prefetch

from domain_events.events import DomainEvent
from domain_events.models import Delivery, StoredEvent
from domain_events.registry import registry


def aggregate_timeline(*, tenant_id: UUID, aggregate_id: UUID) -> list[StoredEvent]:
    """Every committed event of one aggregate in position order, with the deliveries still on record
    (by handler); empty for another tenant's aggregate or an unknown one."""
    return list(
        StoredEvent.objects.filter(tenant_id=tenant_id, aggregate_id=aggregate_id)
        .order_by("position")
        .prefetch_related(Prefetch("deliveries", queryset=Delivery.objects.order_by("handler")))
    )


def first_event_of(*, tenant_id: UUID, aggregate_id: UUID, type_name: str) -> DomainEvent | None:
    """The first committed event of `type_name` of one aggregate, loaded (and upcast) as its
    current version; None when there is none (yet), or it belongs to another tenant.

    For a handler that needs what another handler keeps of an earlier event: handlers are ordered
    per aggregate only within themselves, so that other handler may not have run yet."""
    stored = (
        StoredEvent.objects.filter(tenant_id=tenant_id, aggregate_id=aggregate_id, type=type_name)
        .order_by("position")
        .first()
    )
    if stored is None:
        return None
    return registry.load(stored.type, stored.version, stored.payload, envelope=stored.envelope(), ref=stored.ref)
