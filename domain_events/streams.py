"""Aggregates' streams: one row per aggregate with its last revision (`Stream`).

Recording an event upserts its aggregate's row and keeps it locked until the transaction ends, so
one aggregate's events commit in revision order. A transaction that records events of several
aggregates takes their rows in one order first, sorted by aggregate id: two such transactions then
never wait for each other in a circle, whatever order they record their events in. The bus does it
for `publish_all`, and the executor for a batch that runs several aggregates' deliveries.

SQLite runs one writer at a time: nothing to lock there.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from django.db import transaction

from domain_events import sql
from domain_events.events import DomainEvent


def lock(events: Iterable[DomainEvent]) -> None:
    """Lock the streams of `events`' aggregates (creating the missing ones), in aggregate id order."""
    wanted = {e.aggregate_id: (type(e).aggregate_type(), e.tenant_id) for e in events}
    connection = transaction.get_connection()
    if len(wanted) < 2 or connection.vendor != "postgresql":
        return
    ids = sorted(wanted)
    with connection.cursor() as cursor:
        cursor.execute(
            sql.LOCK_STREAMS,
            {"ids": ids, "types": [wanted[i][0] for i in ids], "tenants": [wanted[i][1] for i in ids]},
        )


def lock_existing(aggregate_ids: Iterable[UUID]) -> None:
    """Lock the streams of aggregates that already have events, in aggregate id order."""
    ids = sorted(set(aggregate_ids))
    connection = transaction.get_connection()
    if len(ids) < 2 or connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(sql.LOCK_EXISTING_STREAMS, [ids])
