"""Writing events into the outbox, inside the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from domain_events.conf import domain_events_settings
from domain_events.events import ENVELOPE_FIELDS, DomainEvent
from domain_events.models import Delivery, StoredEvent
from domain_events.registry import registry

if TYPE_CHECKING:
    from domain_events.bus import Subscription


@dataclass(frozen=True)
class Claim:
    """The right to run one delivery: its id and the lease token that must still be on it."""

    delivery_id: int
    token: UUID
    handler: str


def payload_of(event: DomainEvent) -> dict:
    """The event's own fields, JSON-ready; the envelope is stored in columns beside them."""
    data = registry.dump(event)
    return {k: v for k, v in data.items() if k not in ENVELOPE_FIELDS}


def payload_json(event: DomainEvent) -> str:
    return registry.dump_json(event, exclude=ENVELOPE_FIELDS)


def _publisher_lease(subscription: Subscription, conf: dict) -> timedelta:
    """How long relays leave a fresh delivery to the publisher's fast path.

    A Celery message may wait in a busy queue for a while, so celery-mode deliveries get the
    longer Celery lease: a relay re-sends them only if the message seems lost.
    """
    if subscription.mode == "celery":
        return max(conf["DISPATCH_GRACE"], conf["CELERY_LEASE"])
    return conf["DISPATCH_GRACE"]


def record(event: DomainEvent, subscriptions: Sequence[Subscription]) -> list[Claim]:
    """Store `event` and a pending delivery per subscription; returns the claims to dispatch.

    With dispatch after commit on, deliveries become due to relays only after a grace period,
    which is the publisher's lease on them; with it off they are due at once.
    """
    conf = domain_events_settings()
    fast_path = conf["DISPATCH_ON_COMMIT"]
    now = timezone.now()
    token = uuid.uuid4() if fast_path and subscriptions else None
    due = [now + _publisher_lease(s, conf) if fast_path else now for s in subscriptions]
    connection = transaction.get_connection()
    if connection.vendor == "postgresql":
        rows = _record_in_one_statement(connection, event, subscriptions, now=now, token=token, due=due)
    else:
        rows = _record_with_the_orm(event, subscriptions, now=now, token=token, due=due)
    if not fast_path:
        return []
    return [Claim(pk, token, handler) for pk, handler in rows]


_EVENT_COLUMNS = """
    (event_id, type, version, tenant_id, aggregate_id, occurred_at, recorded_at, correlation_id, causation_id, payload)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)"""

_INSERT_EVENT = "INSERT INTO domain_events_storedevent" + _EVENT_COLUMNS

_INSERT_EVENT_AND_DELIVERIES = (
    "WITH stored AS (INSERT INTO domain_events_storedevent"
    + _EVENT_COLUMNS
    + """ RETURNING id)
INSERT INTO domain_events_delivery
    (stored_event_id, handler, event_type, tenant_id, aggregate_id, status, attempts, next_attempt_at,
     lease_token, last_error, created_at, updated_at)
SELECT stored.id, h.handler, %s, %s, %s, 'pending', 0, h.due, %s, '', %s, %s
  FROM stored, unnest(%s::text[], %s::timestamptz[]) AS h(handler, due)
RETURNING id, handler"""
)


def _record_in_one_statement(connection, event, subscriptions, *, now, token, due) -> list[tuple[int, str]]:
    """PostgreSQL: the event and its deliveries in one statement (one round trip, nothing to compile)."""
    values = (
        event.event_id,
        event.type,
        event.version,
        event.tenant_id,
        event.aggregate_id,
        event.occurred_at,
        now,
        event.correlation_id,
        event.causation_id,
        payload_json(event),
    )
    with connection.cursor() as cursor:
        if not subscriptions:
            cursor.execute(_INSERT_EVENT, values)
            return []
        cursor.execute(
            _INSERT_EVENT_AND_DELIVERIES,
            (
                *values,
                event.type,
                event.tenant_id,
                event.aggregate_id,
                token,
                now,
                now,
                [s.name for s in subscriptions],
                due,
            ),
        )
        return cursor.fetchall()


def _record_with_the_orm(event, subscriptions, *, now, token, due) -> list[tuple[int, str]]:
    stored = StoredEvent.objects.create(
        event_id=event.event_id,
        type=event.type,
        version=event.version,
        tenant_id=event.tenant_id,
        aggregate_id=event.aggregate_id,
        occurred_at=event.occurred_at,
        correlation_id=event.correlation_id,
        causation_id=event.causation_id,
        payload=payload_of(event),
    )
    deliveries = Delivery.objects.bulk_create(
        [
            Delivery(
                stored_event=stored,
                handler=s.name,
                event_type=event.type,
                tenant_id=event.tenant_id,
                aggregate_id=event.aggregate_id,
                next_attempt_at=when,
                lease_token=token,
            )
            for s, when in zip(subscriptions, due, strict=True)
        ]
    )
    return [(d.pk, d.handler) for d in deliveries]
