"""The CloudEvents 1.0 structured JSON form of an event (CONTRACT §5), for whatever leaves the process."""

from __future__ import annotations

from typing import Any

from domain_events.events import DomainEvent
from domain_events.recording import payload_of

CONTENT_TYPE = "application/cloudevents+json"


def to_cloudevent(event: DomainEvent, *, position: int | None = None) -> dict[str, Any]:
    """The event as a CloudEvent dict: envelope as attributes, the event's own fields as `data`.

    Private fields (such as payment tokens) are left out of `data`. With its `position`, the event
    also carries the `sequence` extension: the position zero-padded to 20 digits, so that string
    order is position order.
    """
    data = {k: v for k, v in payload_of(event).items() if k not in event.private_fields}
    cloudevent = {
        "specversion": "1.0",
        "id": str(event.event_id),
        "source": f"/tenants/{event.tenant_id}",
        "type": event.type,
        "time": event.occurred_at.isoformat().replace("+00:00", "Z"),
        "subject": str(event.aggregate_id),
        "datacontenttype": "application/json",
        "data": data,
        "tenantid": str(event.tenant_id),
        "eventversion": event.version,
        "correlationid": event.correlation_id,
        "causationid": str(event.causation_id),
    }
    if position is not None:
        cloudevent["sequence"] = sequence_of(position)
    return cloudevent


def sequence_of(position: int) -> str:
    """The CloudEvents `sequence` value of a position."""
    return f"{position:020d}"
