"""Locking a batch: its delivery rows, their events, and what holds each one back.

One statement per batch on PostgreSQL (`sql.LOCK_LEASED`, `LOCK_DUE`, `LOCK_CHOSEN`): the rows,
their events, each row's blocker (the same handler's earlier unfinished or dead delivery of the
aggregate, by revision) and any earlier event of the aggregate that a publisher without the
handler left without a delivery. SQLite locks with the ORM and looks blockers up row by row.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from domain_events import sql, subscribers
from domain_events.models import Delivery, StoredEvent


@dataclass
class Blocker:
    delivery_id: int
    status: str
    next_attempt_at: datetime


Locked = list[tuple[Delivery, Blocker | None]]
Lock = Callable[[set[int] | None], Locked]


def fetch_locked(statement: str, params: dict) -> Locked:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        fetched = cursor.fetchall()
    out: Locked = []
    # One event usually comes with several deliveries (a row each): it is built once.
    stored_events: dict[int, StoredEvent] = {}
    for row in fetched:
        delivery, blocker, uncovered = _parsed(row, stored_events)
        if blocker is None and uncovered is not None:
            blocker = _cover_before(delivery)
        out.append((delivery, blocker))
    return out


def fetch_started(statement: str, params: dict) -> tuple[Delivery, bool] | None:
    """The one row of a statement that stamps a delivery as started (`sql.START_LEASED`), and
    whether it may run at once: nothing holds it back and no earlier event lacks its delivery.
    None: nothing was stamped."""
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        row = cursor.fetchone()
    if row is None:
        return None
    delivery, blocker, uncovered = _parsed(row, {})
    return delivery, blocker is None and uncovered is None


def _parsed(row: tuple, stored_events: dict[int, StoredEvent]) -> tuple[Delivery, Blocker | None, int | None]:
    """A row of the lock statements: the delivery with its event, its blocker, and the first
    earlier event without a delivery of its handler."""
    width_d, width_e = len(sql.DELIVERY_COLUMNS), len(sql.EVENT_COLUMNS)
    delivery = Delivery.from_db("default", sql.DELIVERY_COLUMNS, row[:width_d])
    stored = stored_events.get(delivery.stored_event_id)
    if stored is None:
        event_values = list(row[width_d : width_d + width_e])
        payload_at = sql.EVENT_COLUMNS.index("payload")
        if isinstance(event_values[payload_at], str):
            event_values[payload_at] = json.loads(event_values[payload_at])
        stored = stored_events[delivery.stored_event_id] = StoredEvent.from_db(
            "default", sql.EVENT_COLUMNS, event_values
        )
    delivery.stored_event = stored
    blocker_id, blocker_status, blocker_due, uncovered = row[width_d + width_e :]
    blocker = Blocker(blocker_id, blocker_status, blocker_due) if blocker_id is not None else None
    return delivery, blocker, uncovered


def _cover_before(delivery: Delivery) -> Blocker | None:
    """Write the deliveries of the aggregate's earlier events that a publisher without the handler
    left out (a rolling deploy), and return the first of them: the delivery waits behind it."""
    found = subscribers.cover_before(delivery.handler, delivery.aggregate_id, delivery.revision)
    return Blocker(*found) if found else None


def orm_locked(qs) -> Locked:
    """SQLite and odd cases: lock (SQLite has one writer anyway), then look up blockers per row."""
    rows = list(
        qs.select_for_update(of=("self",)).select_related("stored_event").order_by("stored_event__position", "id")
    )
    locked = {d.pk for d in rows}
    out: Locked = []
    for delivery in rows:
        found = (
            Delivery.objects.filter(
                handler=delivery.handler,
                aggregate_id=delivery.aggregate_id,
                status__in=Delivery.BLOCKING,
                revision__lt=delivery.revision,
            )
            .exclude(pk__in=locked)
            .order_by("revision")
            .values_list("pk", "status", "next_attempt_at")
            .first()
        )
        if not found and (delivery.revision or 0) > 1:
            found = subscribers.cover_before(delivery.handler, delivery.aggregate_id, delivery.revision)
        out.append((delivery, Blocker(*found) if found else None))
    return out
