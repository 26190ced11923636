"""The audit projection: every event of every tenant, appended to its chain in position order."""

from __future__ import annotations

from collections.abc import Sequence

from audit import services
from domain_events.events import DomainEvent
from domain_events.tracking import LIVE, TrackingContext


def append_to_audit_trail(events: Sequence[DomainEvent], context: TrackingContext) -> None:
    """A batch of events, with the checkpoint that commits with it."""
    if context.target != LIVE:
        raise ValueError("the audit trail is append-only: it is never rebuilt into other tables")
    services.audit_append_events(events=[(e, context.positions[e.event_id]) for e in events], resumes=context.resumes)
