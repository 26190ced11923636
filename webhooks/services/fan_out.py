"""Fan-out: one delivery of an event per active endpoint of its tenant that wants its type."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from django.db import connection
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from core.db import insert_rows
from domain_events.cloudevents import to_cloudevent
from domain_events.events import DomainEvent
from domain_events.models import StoredEvent
from domain_events.running import defer, position_of
from webhooks import sql
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services.queue import enqueue_on_commit
from webhooks.services.waiting import must_wait, with_waiting

# What the fan-out leaves to the end of an executor's optimistic pass (`running.defer`).
DEFERRED = "webhooks.fan_out"


def deliveries_fan_out(*, event: DomainEvent) -> list[WebhookDelivery]:
    """One delivery of `event` per active endpoint of its tenant that wants its type and was
    registered when it occurred (idempotent).

    Runs in the executor's transaction, so the deliveries are written once however often the
    event is handed to it; their messages go to the broker once that transaction commits. One
    query reads the endpoints, the event's position and what a delivery would wait for at each.
    """
    if connection.vendor != "postgresql":
        return _fan_out_orm(event)
    return deliveries_fan_out_many([(event, position_of(event.event_id))])


def deliveries_fan_out_in_batch(*, event: DomainEvent) -> None:
    """`deliveries_fan_out`, or, in an executor's optimistic pass on PostgreSQL, the same left to
    the end of the pass (`running.defer`): the pass's events are then fanned out together, in one
    query and one insert (`deliveries_fan_out_many`)."""
    position = position_of(event.event_id)
    if (
        connection.vendor == "postgresql"
        and position is not None
        and defer(DEFERRED, deliveries_fan_out_many, (event, position))
    ):
        return
    deliveries_fan_out(event=event)


def deliveries_fan_out_many(items: Sequence[tuple[DomainEvent, int | None]]) -> list[WebhookDelivery]:
    """`deliveries_fan_out` for several events, each with its position if the caller knows it
    (PostgreSQL): one query, one insert. A delivery waits for what it would wait for had the events
    been fanned out one by one in position order: an earlier event of its subject open at its
    endpoint, in the database or among these. Events with positions are taken in position order
    whatever order they come in (an executor's pass runs by aggregate)."""
    if all(position is not None for _, position in items):
        items = sorted(items, key=lambda item: item[1])
    now = timezone.now()
    found: dict[int, list[WebhookEndpoint]] = {}
    for endpoint in _candidates(items, now):
        found.setdefault(endpoint.event_n, []).append(endpoint)
    # (endpoint, subject) given an open delivery by this call: a later event of the subject waits.
    opened: set[tuple[object, str]] = set()
    rows: list[WebhookDelivery] = []
    for n, (event, _) in enumerate(items):
        endpoints = [e for e in found.get(n, ()) if e.wants(event.type)]
        subject = str(event.aggregate_id)
        waiting = {e.pk for e in endpoints if must_wait(e) or (e.pk, subject) in opened}
        opened.update((e.pk, subject) for e in endpoints if not e.present)
        rows += _deliveries(event, endpoints, waiting, now)
    return _insert(rows)


def _deliveries(
    event: DomainEvent, endpoints: list[WebhookEndpoint], waiting: set, now: datetime
) -> list[WebhookDelivery]:
    """The deliveries of `event` to `endpoints` (read with the event's position), those to
    `waiting` without a message: the sender ahead of each hands it on when done
    (`sending._hand_on`), the sweep if that sender dies."""
    if not endpoints:
        return []
    position = endpoints[0].event_position
    if position is None:
        raise StoredEvent.DoesNotExist(f"event {event.event_id} is not stored")
    payload = to_cloudevent(event, position=position)
    return [
        WebhookDelivery(
            tenant_id=event.tenant_id,
            endpoint=endpoint,
            event_id=event.event_id,
            event_type=event.type,
            subject=str(event.aggregate_id),  # the CloudEvent's `subject`
            position=position,
            payload=payload,
            next_attempt_at=now,
            enqueued_at=None if endpoint.pk in waiting else now,
        )
        for endpoint in endpoints
    ]


def _insert(rows: list[WebhookDelivery]) -> list[WebhookDelivery]:
    """Write the deliveries (one already there is left as it is) and, once the transaction
    commits, send one message per endpoint for those that may go now: the first one's. Its task
    claims the endpoint's batch, which takes the others with it (`sending`); a message lost loses
    them all alike, and the sweep's proof of loss covers each (`redelivery`)."""
    deliveries = insert_rows(rows, ignore_conflicts=True)
    first: dict[object, WebhookDelivery] = {}
    for delivery in deliveries:
        if delivery.enqueued_at is not None:
            first.setdefault(delivery.endpoint_id, delivery)
    enqueue_on_commit([d.pk for d in first.values()])
    return deliveries


def _candidates(items: Sequence[tuple[DomainEvent, int | None]], now: datetime) -> Iterable[WebhookEndpoint]:
    """For each event (`event_n`: its index in `items`), its tenant's active endpoints registered
    when it occurred (an endpoint gets the events from its registration on, whenever the relay runs
    this), with the event's position and what a delivery would wait for at each (`sql._FAN_OUT`)."""
    params = {
        "n": list(range(len(items))),
        "event_id": [event.event_id for event, _ in items],
        "tenant": [event.tenant_id for event, _ in items],
        "subject": [str(event.aggregate_id) for event, _ in items],
        "occurred": [event.occurred_at for event, _ in items],
        "now": now,
    }
    positions = [position for _, position in items]
    if None in positions:
        return WebhookEndpoint.objects.raw(sql.FAN_OUT, params)
    # Run by the executor, which read the events: their positions need no look-up.
    return WebhookEndpoint.objects.raw(sql.FAN_OUT_AT, {**params, "position": positions})


def _fan_out_orm(event: DomainEvent) -> list[WebhookDelivery]:
    """`deliveries_fan_out` elsewhere than on PostgreSQL, through the ORM."""
    now = timezone.now()
    subject = str(event.aggregate_id)
    position = StoredEvent.objects.filter(event_id=event.event_id).values("position")[:1]
    registered = WebhookEndpoint.objects.filter(created_at__lte=event.occurred_at)
    candidates = registered.filter(tenant_id=event.tenant_id, is_active=True).annotate(
        event_position=Subquery(position)
    )
    endpoints = [e for e in with_waiting(candidates, subject, OuterRef("event_position"), now) if e.wants(event.type)]
    return _insert(_deliveries(event, endpoints, {e.pk for e in endpoints if must_wait(e)}, now))
