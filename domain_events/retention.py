"""Retention: what the relays delete, and what they keep; and the monthly partitions' housekeeping.

Stored events are kept until `archive_events` archives their month (`domain_events.archive`).
Delivery records go by the rules of `prune`, one relay at a time (an advisory lock), each step in a
transaction of its own. Where the tables are partitioned by month (PostgreSQL,
`domain_events.partitions`), succeeded and skipped deliveries go a whole month at a time: once
their events' month is over by more than `DELIVERY_RETENTION`, its partition is truncated, the rows
that must stay set aside and put back. Elsewhere (SQLite) they are deleted row by row in batches.
"""

from __future__ import annotations

import logging

from django.db import OperationalError, connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from domain_events import partitions, sql
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
    """Apply the retention rules; only one relay at a time does it, and it first makes the months
    ahead (`partitions.partitions_ensure`) where the tables are partitioned.

    - succeeded and skipped deliveries: after `DELIVERY_RETENTION`; where deliveries are
      partitioned, a month at a time once their events' month is that long over (`_past_months`);
    - dead letters: after `DEAD_LETTER_RETENTION`, unless a later delivery of the same handler
      and aggregate still waits behind one: a dead letter that holds others is kept until
      staff redrive or skip it, so nothing is left waiting for a release that never comes;
    - open deliveries of orphaned handlers (not seen by any process for `ORPHAN_RETENTION`).
    Stored events are not touched here.
    """
    conf = domain_events_settings()
    now = timezone.now()
    deleted = 0
    rules = []
    if partitions.partitioned(partitions.DELIVERIES):
        with transaction.atomic():
            if not _prune_lock():
                return deleted
            partitions.partitions_ensure(now=now)
        deleted += _past_months(now - conf["DELIVERY_RETENTION"])
    else:
        rules.append(
            (
                "succeeded or skipped",
                Delivery.objects.filter(
                    status__in=[DeliveryStatus.SUCCEEDED, DeliveryStatus.SKIPPED],
                    completed_at__lt=now - conf["DELIVERY_RETENTION"],
                ),
            )
        )
    rules += [
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
    for label, qs in rules:
        while True:
            with transaction.atomic():
                if not _prune_lock():
                    return deleted
                rows = list(qs.values_list("pk", "event_recorded_at")[:PRUNE_BATCH])
                if not rows:
                    break
                count = Delivery.objects.filter(
                    pk__in=[pk for pk, _ in rows], event_recorded_at__in={at for _, at in rows}
                ).delete()[0]
            deleted += count
            logger.info("pruned %d %s delivery records", count, label)
    return deleted


# In a month of deliveries fully past retention, what stays when it is truncated: everything but the
# succeeded and skipped rows finished before the cutoff. Dead letters stay for their own rule, and
# so do the open rows they hold back (and those of orphaned handlers, for theirs).
_KEPT_IN_A_PAST_MONTH = (
    f"status NOT IN ('{DeliveryStatus.SUCCEEDED}', '{DeliveryStatus.SKIPPED}') "
    "OR completed_at IS NULL OR completed_at >= %s"
)


def _past_months(cutoff) -> int:
    """Truncate each month of deliveries whose events' month ended before `cutoff`, keeping the rows
    that must stay; returns how many rows went."""
    removed = 0
    for part in partitions.month_partitions(partitions.DELIVERIES):
        if part.month is None or partitions.month_bounds(part.month)[1] > cutoff:
            continue
        try:
            with transaction.atomic():
                if not _prune_lock():
                    return removed
                gone = partitions.month_truncate(
                    table=partitions.DELIVERIES, month=part.month, keep=_KEPT_IN_A_PAST_MONTH, params=[cutoff]
                )
        except OperationalError as exc:
            logger.warning("deliveries of %s not truncated this round: %s", f"{part.month:%Y-%m}", exc)
            continue
        if gone:
            logger.info("pruned %d succeeded or skipped delivery records of %s", gone, f"{part.month:%Y-%m}")
        removed += gone
    return removed


def _prune_lock() -> bool:
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute(sql.TRY_PRUNE_LOCK)
        return cursor.fetchone()[0]
