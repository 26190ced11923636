"""Fan-out: one delivery of an event per active endpoint of its tenant that wants its type."""

from __future__ import annotations

from django.utils import timezone

from domain_events.cloudevents import to_cloudevent
from domain_events.events import DomainEvent
from domain_events.models import StoredEvent
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services.queue import enqueue_on_commit
from webhooks.services.waiting import endpoints_to_wait_for


def deliveries_fan_out(*, event: DomainEvent) -> list[WebhookDelivery]:
    """One delivery of `event` per active endpoint of its tenant that wants its type (idempotent).

    Runs in the executor's transaction, so the deliveries are written once however often the
    event is handed to it; their messages go to the broker once that transaction commits.
    """
    endpoints = [
        e for e in WebhookEndpoint.objects.filter(tenant_id=event.tenant_id, is_active=True) if e.wants(event.type)
    ]
    if not endpoints:
        return []
    position = StoredEvent.objects.filter(event_id=event.event_id).values_list("position", flat=True).get()
    payload = to_cloudevent(event, position=position)
    now = timezone.now()
    # A delivery that cannot go now (an earlier event of its subject is still open for the
    # endpoint, or the endpoint has as many requests in flight as allowed) gets no message: the
    # sender ahead of it hands it on when it is done (`sending._hand_on`), the sweep if that sender dies.
    waiting = endpoints_to_wait_for([e.pk for e in endpoints], payload["subject"], position, now)
    deliveries = WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                tenant_id=event.tenant_id,
                endpoint=endpoint,
                event_id=event.event_id,
                event_type=event.type,
                subject=payload["subject"],
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
