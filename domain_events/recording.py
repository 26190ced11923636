"""Recording: an event and a pending delivery per subscriber, inside the caller's transaction."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from domain_events import sql
from domain_events.claims import Claim
from domain_events.conf import domain_events_settings
from domain_events.events import ENVELOPE_FIELDS, DomainEvent
from domain_events.models import Delivery, StoredEvent, Stream
from domain_events.private import sealed
from domain_events.registry import registry
from domain_events.subscriptions import Mode, Subscription


def payload_of(event: DomainEvent) -> dict:
    """The event's own fields, JSON-ready; the envelope is stored in columns beside them."""
    data = registry.dump(event)
    return {k: v for k, v in data.items() if k not in ENVELOPE_FIELDS}


def stored_payload(event: DomainEvent) -> dict:
    """The payload as stored: its private fields encrypted (domain_events/private.py)."""
    return sealed(event.private_fields, payload_of(event))


def payload_json(event: DomainEvent) -> str:
    """The stored payload as JSON text (straight from the model when nothing in it is private)."""
    if event.private_fields:
        return json.dumps(stored_payload(event), separators=(",", ":"))
    return registry.dump_json(event, exclude=ENVELOPE_FIELDS)


def _publisher_lease(subscription: Subscription, conf: dict) -> timedelta:
    """How long relays leave a fresh delivery to the publisher's fast path.

    A Celery message is sent right after commit; a relay looks again after `CELERY_SEND_CHECK`
    and sends it anew only if it was lost (see `handoff`).
    """
    if subscription.mode is Mode.CELERY:
        return conf["CELERY_SEND_CHECK"]
    return conf["DISPATCH_GRACE"]


def record(event: DomainEvent, subscriptions: Sequence[Subscription]) -> list[Claim]:
    """Store `event` and a pending delivery per subscription; returns the claims to dispatch.

    With dispatch after commit on, the publisher leases its deliveries for a grace period, so
    relays leave them alone; with it off they are due at once and the commit wakes the relays.
    With `RUN_ON_COMMIT` off, the publisher still sends its Celery messages after commit, but its
    in-process deliveries are due at once for the relays, which the commit wakes.
    """
    conf = domain_events_settings()
    fast_path = conf["DISPATCH_ON_COMMIT"]
    run_here = conf["RUN_ON_COMMIT"]
    now = timezone.now()
    token = uuid.uuid4() if fast_path and subscriptions else None
    mine = [fast_path and (run_here or s.mode is Mode.CELERY) for s in subscriptions]
    due = [now + _publisher_lease(s, conf) if kept else now for s, kept in zip(subscriptions, mine, strict=True)]
    sent = [now if fast_path and s.mode is Mode.CELERY else None for s in subscriptions]
    notify = not all(mine)
    connection = transaction.get_connection()
    if connection.vendor == "postgresql":
        rows = _record_in_one_statement(
            connection, event, subscriptions, now=now, token=token, due=due, sent=sent, notify=notify
        )
    else:
        rows = _record_with_the_orm(event, subscriptions, now=now, token=token, due=due, sent=sent)
    if not fast_path:
        return []
    kept_names = {s.name for s, kept in zip(subscriptions, mine, strict=True) if kept}
    return [
        Claim(pk, token, handler, event.traceparent, recorded_at)
        for pk, handler, recorded_at in rows
        if handler in kept_names
    ]


def _event_values(event: DomainEvent, now: datetime) -> tuple:
    values = {
        "event_id": event.event_id,
        "type": event.type,
        "version": event.version,
        "tenant_id": event.tenant_id,
        "aggregate_id": event.aggregate_id,
        "occurred_at": event.occurred_at,
        "recorded_at": now,
        "correlation_id": event.correlation_id,
        "causation_id": event.causation_id,
        "actor": event.actor,
        "traceparent": event.traceparent,
        "payload": payload_json(event),
    }
    return tuple(values[c] for c in sql.EVENT_INSERT_COLUMNS)


def _record_in_one_statement(
    connection, event, subscriptions, *, now, token, due, sent, notify: bool
) -> list[tuple[int, str, datetime]]:
    values = (event.aggregate_id, event.aggregate_type(), event.tenant_id, *_event_values(event, now))
    with connection.cursor() as cursor:
        if not subscriptions:
            cursor.execute(sql.INSERT_EVENT, values)
            return []
        params = [
            *values,
            event.type,
            event.tenant_id,
            event.aggregate_id,
            token,
            now,
            now,
            [s.name for s in subscriptions],
            due,
            sent,
        ]
        if notify:
            params.append(domain_events_settings()["NOTIFY_CHANNEL"])
        cursor.execute(sql.insert_event_and_deliveries(notify=notify), params)
        # The event is recorded at `now`, and its deliveries with it.
        return [(pk, handler, now) for pk, handler in cursor.fetchall()]


def _record_with_the_orm(event, subscriptions, *, now, token, due, sent) -> list[tuple[int, str, datetime]]:
    """SQLite: one writer at a time, so the stream's revision needs no lock of its own."""
    revision = _next_revision(event)
    stored = StoredEvent.objects.create(
        revision=revision,
        event_id=event.event_id,
        type=event.type,
        version=event.version,
        tenant_id=event.tenant_id,
        aggregate_id=event.aggregate_id,
        occurred_at=event.occurred_at,
        correlation_id=event.correlation_id,
        causation_id=event.causation_id,
        actor=event.actor,
        traceparent=event.traceparent,
        payload=stored_payload(event),
    )
    deliveries = Delivery.objects.bulk_create(
        [
            Delivery(
                stored_event=stored,
                event_recorded_at=stored.recorded_at,
                handler=s.name,
                event_type=event.type,
                tenant_id=event.tenant_id,
                aggregate_id=event.aggregate_id,
                revision=revision,
                next_attempt_at=when,
                lease_token=token,
                sent_at=sent_at,
            )
            for s, when, sent_at in zip(subscriptions, due, sent, strict=True)
        ]
    )
    return [(d.pk, d.handler, d.event_recorded_at) for d in deliveries]


def _next_revision(event: DomainEvent) -> int:
    updated = Stream.objects.filter(aggregate_id=event.aggregate_id).update(revision=F("revision") + 1)
    if not updated:
        Stream.objects.create(
            aggregate_id=event.aggregate_id,
            aggregate_type=event.aggregate_type(),
            tenant_id=event.tenant_id,
            revision=1,
        )
        return 1
    return Stream.objects.filter(aggregate_id=event.aggregate_id).values_list("revision", flat=True).get()
