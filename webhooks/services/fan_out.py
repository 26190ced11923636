"""Fan-out: one delivery of an event per active endpoint of its tenant that wants its type."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from core.db import insert_rows
from domain_events.cloudevents import to_cloudevent
from domain_events.events import DomainEvent
from domain_events.models import StoredEvent
from domain_events.running import position_of
from webhooks import sql
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services.queue import enqueue_on_commit
from webhooks.services.waiting import must_wait, with_waiting


def deliveries_fan_out(*, event: DomainEvent) -> list[WebhookDelivery]:
    """One delivery of `event` per active endpoint of its tenant that wants its type and was
    registered when it occurred (idempotent).

    Runs in the executor's transaction, so the deliveries are written once however often the
    event is handed to it; their messages go to the broker once that transaction commits. One
    query reads the endpoints, the event's position and what a delivery would wait for at each.
    """
    now = timezone.now()
    subject = str(event.aggregate_id)  # the CloudEvent's `subject`
    endpoints = [e for e in _candidates(event, subject, now) if e.wants(event.type)]
    if not endpoints:
        return []
    position = endpoints[0].event_position
    if position is None:
        raise StoredEvent.DoesNotExist(f"event {event.event_id} is not stored")
    payload = to_cloudevent(event, position=position)
    # A delivery that cannot go now (an earlier event of its subject is still open for the
    # endpoint, or the endpoint has as many requests in flight as allowed) gets no message: the
    # sender ahead of it hands it on when it is done (`sending._hand_on`), the sweep if that sender dies.
    waiting = {e.pk for e in endpoints if must_wait(e)}
    deliveries = insert_rows(
        [
            WebhookDelivery(
                tenant_id=event.tenant_id,
                endpoint=endpoint,
                event_id=event.event_id,
                event_type=event.type,
                subject=subject,
                position=position,
                payload=payload,
                next_attempt_at=now,
                enqueued_at=None if endpoint.pk in waiting else now,
            )
            for endpoint in endpoints
        ],
        ignore_conflicts=True,
    )
    enqueue_on_commit([d.pk for d in deliveries if d.endpoint_id not in waiting])
    return deliveries


def _candidates(event: DomainEvent, subject: str, now) -> Iterable[WebhookEndpoint]:
    """The tenant's active endpoints registered when `event` occurred (an endpoint gets the events
    from its registration on, whenever the relay runs this), with the event's position and what a
    delivery would wait for at each (`waiting.with_waiting`)."""
    if connection.vendor == "postgresql":
        params = {"occurred": event.occurred_at, "tenant": event.tenant_id, "subject": subject, "now": now}
        position = position_of(event.event_id)
        if position is None:
            return WebhookEndpoint.objects.raw(sql.FAN_OUT, {**params, "event_id": event.event_id})
        # Run by the executor, which read the event: its position needs no look-up.
        return WebhookEndpoint.objects.raw(sql.FAN_OUT_AT, {**params, "position": position})
    position = StoredEvent.objects.filter(event_id=event.event_id).values("position")[:1]
    registered = WebhookEndpoint.objects.filter(created_at__lte=event.occurred_at)
    candidates = registered.filter(tenant_id=event.tenant_id, is_active=True).annotate(
        event_position=Subquery(position)
    )
    return with_waiting(candidates, subject, OuterRef("event_position"), now)
