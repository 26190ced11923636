"""Reading back what the modules published."""

from __future__ import annotations

from uuid import UUID

from domain_events.models import StoredEvent


def published(event_type: str, order_id: UUID | str) -> list[StoredEvent]:
    """The stored events of one type about one order, in position order."""
    return list(StoredEvent.objects.filter(type=event_type, aggregate_id=order_id).order_by("position"))
