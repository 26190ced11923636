"""Aggregates' streams: one row per aggregate with its last revision (`Stream`).

Recording an event upserts its aggregate's row and keeps it locked until the transaction ends, so
one aggregate's events commit in revision order. A transaction that records events of several
aggregates takes their rows in one order, sorted by aggregate id: two such transactions then never
wait for each other in a circle, whatever order they record their events in. The bus locks them
first for `publish_all`. The executor runs a batch's deliveries in aggregate id order instead, so
that its handlers take them in that order as they record, and a batch holds only the streams its
handlers record on: a batch of webhook fan-outs does not keep a capture on the same order waiting.

SQLite runs one writer at a time: nothing to lock there.
"""

from __future__ import annotations

from collections.abc import Iterable

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
