"""The integration relay: a position reader that publishes each event as a CloudEvent.

Relays run it in position order from its checkpoint, so the broker sees the events in the order
they were recorded. The checkpoint moves only past what the broker confirmed: a broker outage
delays the events, never drops or reorders them, and a retry repeats at most the one message
whose confirmation was lost (consumers drop repeats by `message_id`, the event id).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from domain_events.cloudevents import to_cloudevent
from domain_events.events import DomainEvent
from domain_events.tracking import LIVE, PartlyApplied, TrackingContext
from integrations import transport


def publish_events_to_broker(events: Sequence[DomainEvent], context: TrackingContext) -> None:
    """Publish a batch to the `shelfwise.events` exchange, each message confirmed before the next."""
    if context.target != LIVE:
        raise ValueError("published events cannot be taken back: the broker is never rebuilt")
    messages = [message_for(event, context.positions[event.event_id]) for event in events]
    try:
        transport.publish(messages)
    except transport.BrokerUnavailable as exc:
        if exc.confirmed:
            raise PartlyApplied(messages[exc.confirmed - 1].position, exc) from exc
        raise


def message_for(event: DomainEvent, position: int) -> transport.Message:
    return transport.Message(
        routing_key=event.type,
        message_id=str(event.event_id),
        correlation_id=event.correlation_id,
        body=json.dumps(to_cloudevent(event, position=position), separators=(",", ":")),
        position=position,
    )
