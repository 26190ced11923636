"""Writing events into the outbox, inside the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING
from uuid import UUID

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
    data = registry.dump(event)
    return {k: v for k, v in data.items() if k not in ENVELOPE_FIELDS}


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
    if not subscriptions:
        return []
    conf = domain_events_settings()
    fast_path = conf["DISPATCH_ON_COMMIT"]
    now = timezone.now()
    token = uuid.uuid4() if fast_path else None
    deliveries = Delivery.objects.bulk_create(
        [
            Delivery(
                stored_event=stored,
                handler=s.name,
                event_type=event.type,
                tenant_id=event.tenant_id,
                aggregate_id=event.aggregate_id,
                next_attempt_at=now + _publisher_lease(s, conf) if fast_path else now,
                lease_token=token,
            )
            for s in subscriptions
        ]
    )
    if not fast_path:
        return []
    return [Claim(d.pk, token, d.handler) for d in deliveries]
