"""The CloudEvents 1.0 structured JSON form of an event (docs/api.md), for whatever leaves the process."""

from __future__ import annotations

from typing import Any

from domain_events.actors import ACTOR_PATTERN, SYSTEM
from domain_events.events import DomainEvent
from domain_events.recording import payload_of

CONTENT_TYPE = "application/cloudevents+json"
TRACEPARENT_PATTERN = "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"


def to_cloudevent(event: DomainEvent, *, position: int | None = None) -> dict[str, Any]:
    """The event as a CloudEvent dict: envelope as attributes, the event's own fields as `data`.

    Private fields (such as payment tokens) are left out of `data`. With its `position`, the event
    also carries the `sequence` extension: the position zero-padded to 20 digits, so that string
    order is position order. An event published with tracing on carries the `traceparent`
    extension (distributed tracing).
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
        "actor": event.actor or SYSTEM,
    }
    if event.traceparent:
        # CloudEvents' distributed tracing extension: the context the event was published in.
        cloudevent["traceparent"] = event.traceparent
    if position is not None:
        cloudevent["sequence"] = sequence_of(position)
    return cloudevent


def sequence_of(position: int) -> str:
    """The CloudEvents `sequence` value of a position."""
    return f"{position:020d}"


# The envelope of every CloudEvent that leaves the process; `data` is described per event type and
# version (`domain_events.schemas.data_schema`).
CLOUDEVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "subject",
        "datacontenttype",
        "data",
        "tenantid",
        "eventversion",
        "correlationid",
        "causationid",
        "actor",
        "sequence",
    ],
    "properties": {
        "specversion": {"type": "string", "const": "1.0"},
        "id": {"type": "string", "format": "uuid", "description": "The event id: drop repeats by it."},
        "source": {"type": "string", "pattern": "^/tenants/[0-9a-f-]{36}$"},
        "type": {"type": "string", "description": "The event type, such as `order.placed`."},
        "time": {"type": "string", "format": "date-time", "description": "When it happened."},
        "subject": {"type": "string", "format": "uuid", "description": "The aggregate id (the order, the product)."},
        "datacontenttype": {"type": "string", "const": "application/json"},
        "data": {"type": "object", "description": "The event's own fields, per type and version."},
        "tenantid": {"type": "string", "format": "uuid"},
        "eventversion": {"type": "integer", "minimum": 1, "description": "The version of `data`'s schema."},
        "correlationid": {"type": "string", "description": "Shared by every event of one request's story."},
        "causationid": {"type": "string", "description": "The event (or request) that caused this one."},
        "actor": {
            "type": "string",
            "pattern": ACTOR_PATTERN,
            "description": (
                "Who caused it: `<kind>:<user id>` with kind `customer`, `staff` or `operator`, or `system`; "
                "an event caused by another event has that event's actor."
            ),
        },
        "traceparent": {
            "type": "string",
            "pattern": TRACEPARENT_PATTERN,
            "description": (
                "The W3C trace context the event was published in (the CloudEvents distributed tracing "
                "extension); present when tracing is on."
            ),
        },
        "sequence": {
            "type": "string",
            "pattern": "^[0-9]{20}$",
            "description": "The global position, zero-padded: string order is the order of recording.",
        },
    },
}
