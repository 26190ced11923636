"""Helpers shared by the orders tests."""

from __future__ import annotations

from uuid import UUID

from domain_events.models import StoredEvent


def events_of(order_id: UUID, type_: str | None = None) -> list[StoredEvent]:
    """The stored events of one order, in the order they were recorded."""
    events = StoredEvent.objects.filter(aggregate_id=order_id).order_by("id")
    if type_ is not None:
        events = events.filter(type=type_)
    return list(events)


def event_types_of(order_id: UUID) -> list[str]:
    return [e.type for e in events_of(order_id)]
