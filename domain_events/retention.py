"""Retention: what the relays delete, and what they keep.

Stored events are kept until `archive_events` archives their month (`domain_events.archive`).
Delivery records go by the rules of `prune`, one relay at a time
(an advisory lock), in batches, each in a transaction of its own.
"""

from __future__ import annotations

import logging

from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from domain_events import sql
from domain_events.conf import domain_events_settings
from domain_events.models import Delivery, DeliveryStatus, Subscriber
from domain_events.subscriptions import subscriptions

logger = logging.getLogger(__name__)

PRUNE_BATCH = 5000
# An open delivery of the same handler and aggregate as the dead letter of the outer query.
_waiting_behind = Delivery.objects.filter(
    aggregate_id=OuterRef("aggregate_id"), handler=OuterRef("handler"), status__in=Delivery.OPEN
)


def prune() -> int:
    """Apply the retention rules; only one relay at a time does it.

    - succeeded and skipped deliveries: after `DELIVERY_RETENTION`;
    - dead letters: after `DEAD_LETTER_RETENTION`, unless a later delivery of the same handler
      and aggregate still waits behind one: a dead letter that holds others is kept until
      staff redrive or skip it, so nothing is left waiting for a release that never comes;
    - open deliveries of orphaned handlers (not seen by any process for `ORPHAN_RETENTION`).
    Stored events are not touched here.
    """
    conf = domain_events_settings()
    now = timezone.now()
    rules = [
        (
            "succeeded or skipped",
            Delivery.objects.filter(
                status__in=[DeliveryStatus.SUCCEEDED, DeliveryStatus.SKIPPED],
                completed_at__lt=now - conf["DELIVERY_RETENTION"],
            ),
        ),
        (
            "dead",
            Delivery.objects.filter(
                status=DeliveryStatus.DEAD, updated_at__lt=now - conf["DEAD_LETTER_RETENTION"]
            ).exclude(Exists(_waiting_behind)),
        ),
    ]
    gone = list(
        Subscriber.objects.filter(last_seen_at__lt=now - conf["ORPHAN_RETENTION"])
        .exclude(name__in=[s.name for s in subscriptions.all()])
        .values_list("name", flat=True)
    )
    if gone:
        rules.append(("orphaned", Delivery.objects.filter(handler__in=gone, status__in=Delivery.OPEN)))
    deleted = 0
    for label, qs in rules:
        while True:
            with transaction.atomic():
                if not _prune_lock():
                    return deleted
                ids = list(qs.values_list("pk", flat=True)[:PRUNE_BATCH])
                if not ids:
                    break
                count = Delivery.objects.filter(pk__in=ids).delete()[0]
            deleted += count
            logger.info("pruned %d %s delivery records", count, label)
    return deleted


def _prune_lock() -> bool:
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute(sql.TRY_PRUNE_LOCK)
        return cursor.fetchone()[0]
