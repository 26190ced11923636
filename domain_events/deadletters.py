"""Dead letters: redrive them, or skip them with a recorded reason.

A dead delivery holds back the later events of its aggregate for its handler; both a redrive (once
it succeeds) and a skip release them.
"""

from __future__ import annotations

import uuid

from django.db import transaction
from django.utils import timezone

from domain_events.claims import Claim
from domain_events.conf import domain_events_settings
from domain_events.models import Delivery, DeliveryStatus
from domain_events.outcomes import release_held


def redrive(queryset) -> int:
    """Reopen the dead deliveries of `queryset` with a fresh schedule and hand them on at once."""
    from domain_events.fastpath import hand_on

    with transaction.atomic():
        ids = list(
            queryset.filter(status=DeliveryStatus.DEAD)
            .select_for_update(skip_locked=True)
            .values_list("pk", "handler", "event_recorded_at")
        )
        if not ids:
            return 0
        token = uuid.uuid4()
        now = timezone.now()
        Delivery.objects.filter(pk__in=[pk for pk, _, _ in ids], event_recorded_at__in={at for _, _, at in ids}).update(
            status=DeliveryStatus.PENDING,
            attempts=0,
            lease_token=token,
            next_attempt_at=now + domain_events_settings()["LEASE"],
            sent_at=None,
            started_at=None,
            updated_at=now,
        )
        claims = [Claim(pk, token, handler, event_recorded_at=at) for pk, handler, at in ids]
        transaction.on_commit(lambda: hand_on(claims, by_relay=True))
    return len(ids)


def skip(queryset, *, reason: str, by: str) -> int:
    """Give up on the dead deliveries of `queryset`: mark them skipped with `reason`, and release
    the later events they held back."""
    reason = reason.strip()
    if not reason:
        raise ValueError("a reason is required to skip a dead letter")
    with transaction.atomic():
        rows = list(
            queryset.filter(status=DeliveryStatus.DEAD)
            .select_for_update(skip_locked=True)
            .values_list("pk", "event_recorded_at")
        )
        if not rows:
            return 0
        ids = [pk for pk, _ in rows]
        now = timezone.now()
        Delivery.objects.filter(pk__in=ids, event_recorded_at__in={at for _, at in rows}).update(
            status=DeliveryStatus.SKIPPED,
            resolution=f"skipped by {by} at {now:%Y-%m-%d %H:%M:%S %Z}: {reason}",
            lease_token=None,
            completed_at=now,
            updated_at=now,
        )
        release_held(ids, now)
    return len(ids)
