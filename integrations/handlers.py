"""The integration relay: a position reader that publishes each event as a CloudEvent.

Relays run it in position order from its checkpoint, so the broker sees the events in the order
they were recorded. The checkpoint moves only past what the broker confirmed: a broker outage
delays the events, never drops or reorders them. What the broker took without the checkpoint
knowing (a lost confirmation, a relay killed before its commit) is not sent again: the first batch
of every connection skips what the broker's ledger says it already has (`transport.ledger_mark`),
so consumers get each event once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from domain_events.cloudevents import to_cloudevent
from domain_events.events import DomainEvent
from domain_events.models import StoredEvent
from domain_events.tracking import LIVE, PartlyApplied, TrackingContext
from integrations import transport


def publish_events_to_broker(events: Sequence[DomainEvent], context: TrackingContext) -> None:
    """Publish a batch to the `shelfwise.events` exchange, each message confirmed before the next."""
    if context.target != LIVE:
        raise ValueError("published events cannot be taken back: the broker is never rebuilt")
    messages = [message_for(event, context.positions[event.event_id]) for event in events]
    had = already_at_the_broker(messages, transport.ledger_mark())
    try:
        transport.publish(messages[had:])
    except transport.BrokerUnavailable as exc:
        if had + exc.confirmed:
            raise PartlyApplied(messages[had + exc.confirmed - 1].position, exc) from exc
        raise


def already_at_the_broker(messages: Sequence[transport.Message], mark: transport.LedgerMark | None) -> int:
    """How many of `messages` (in position order) the broker took before: those up to the ledger's
    mark, if the mark is this deployment's event at that position (another deployment publishing
    to the same exchange and ledger would leave a mark that is not ours: it is then ignored)."""
    if mark is None or not messages or mark.position < messages[0].position:
        return 0
    if not StoredEvent.objects.filter(position=mark.position, event_id=mark.message_id).exists():
        return 0
    return sum(1 for m in messages if m.position <= mark.position)


def message_for(event: DomainEvent, position: int) -> transport.Message:
    return transport.Message(
        routing_key=event.type,
        message_id=str(event.event_id),
        correlation_id=event.correlation_id,
        body=json.dumps(to_cloudevent(event, position=position), separators=(",", ":")),
        position=position,
    )
