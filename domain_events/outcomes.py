"""Recording what a run came to: success (releasing what waited behind it), a retry or a dead
letter (by the one retry policy), or a hold behind an earlier delivery."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import F
from django.utils import timezone

from domain_events import sql
from domain_events.conf import handler_retry_policy
from domain_events.locking import Blocker
from domain_events.models import UNTIL_RELEASED, Delivery, DeliveryStatus

logger = logging.getLogger(__name__)

CHANGED_FIELDS = [
    "status",
    "attempts",
    "next_attempt_at",
    "lease_token",
    "last_error",
    "held_by",
    "sent_at",
    "started_at",
    "updated_at",
]


def hold(delivery: Delivery, blocker: Blocker) -> None:
    """Wait behind `blocker` without polling: until its next attempt, or until released."""
    dead = blocker.status == DeliveryStatus.DEAD
    delivery.held_by = blocker.delivery_id
    delivery.lease_token = None
    delivery.sent_at = delivery.started_at = None
    delivery.next_attempt_at = UNTIL_RELEASED if dead else max(blocker.next_attempt_at, timezone.now())
    delivery.last_error = (
        f"held by a dead letter: delivery #{blocker.delivery_id} of an earlier event"
        if dead
        else f"waiting for an earlier event of the same aggregate (delivery #{blocker.delivery_id})"
    )


def mark_succeeded(delivery_ids: list[int], now, recorded: Sequence[datetime] | None = None) -> None:
    """Record `delivery_ids` as succeeded; `recorded`, their events' `recorded_at` when known,
    keeps the statement to those months' partitions (`sql`)."""
    if connection.vendor == "postgresql":
        params = {"ids": delivery_ids, "now": now}
        if recorded is not None:
            params["recorded"] = list(recorded)
        with connection.cursor() as cursor:
            cursor.execute(sql.MARK_SUCCEEDED if recorded is None else sql.MARK_SUCCEEDED_IN_MONTHS, params)
        return
    Delivery.objects.filter(pk__in=delivery_ids).update(
        status=DeliveryStatus.SUCCEEDED,
        attempts=F("attempts") + 1,
        lease_token=None,
        last_error="",
        held_by=None,
        completed_at=now,
        updated_at=now,
    )
    release_held(delivery_ids, now)


def release_held(delivery_ids: Sequence[int], now) -> int:
    """Make due at once what waited behind `delivery_ids` (they succeeded or were skipped); a row
    under someone's lease is left to its holder."""
    return Delivery.objects.filter(
        held_by__in=list(delivery_ids), status__in=Delivery.OPEN, lease_token__isnull=True
    ).update(held_by=None, next_attempt_at=now, last_error="", updated_at=now)


def release_holds_of_ended_blockers(held: Sequence[tuple[int, datetime]], now) -> int:
    """Release the just-held rows of `held` (id and event's `recorded_at` each) whose blocker ended
    while they were being held.

    A blocker that succeeded in the moment its follower was held released only the holds it could
    see; without this the follower would sleep until the blocker's old next attempt (its lease).
    """
    if not held:
        return 0
    held_ids = [pk for pk, _ in held]
    recorded = sorted({at for _, at in held})
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql.BLOCKERS_OF_HELD, {"ids": held_ids, "recorded": recorded})
            ended = [pk for pk, status in cursor.fetchall() if status not in Delivery.BLOCKING]
    else:
        blockers = Delivery.objects.filter(pk__in=held_ids).values_list("held_by", flat=True)
        ended = list(
            Delivery.objects.filter(pk__in=list(blockers))
            .exclude(status__in=Delivery.BLOCKING)
            .values_list("pk", flat=True)
        )
    if not ended:
        return 0
    return Delivery.objects.filter(
        pk__in=held_ids,
        event_recorded_at__in=recorded,
        held_by__in=ended,
        status__in=Delivery.OPEN,
        lease_token__isnull=True,
    ).update(held_by=None, next_attempt_at=now, last_error="", updated_at=now)


def save_outcomes(deliveries: Sequence[Delivery], now) -> None:
    """Write what `hold` or `schedule_retry` changed on `deliveries`, each row found by its id and
    its event's `recorded_at` (its month's partition alone)."""
    for delivery in deliveries:
        delivery.updated_at = now
    months = sorted({d.event_recorded_at for d in deliveries})
    Delivery.objects.filter(event_recorded_at__in=months).bulk_update(deliveries, CHANGED_FIELDS)


def schedule_retry(delivery: Delivery, error: str, now) -> None:
    delivery.attempts += 1
    delivery.last_error = error
    delivery.lease_token = None
    delivery.held_by = None
    delivery.sent_at = delivery.started_at = None
    delay = handler_retry_policy(delivery.handler).delay(delivery.attempts)
    if delay is None:
        delivery.status = DeliveryStatus.DEAD
        delivery.next_attempt_at = now
        logger.error("delivery %s of %s is dead after %d attempts", delivery.pk, delivery.handler, delivery.attempts)
        return
    delivery.status = DeliveryStatus.FAILED
    delivery.next_attempt_at = now + timedelta(seconds=delay)
