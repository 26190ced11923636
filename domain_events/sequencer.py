"""The sequencer: gives committed events their global `position`, after their commit.

Publishing takes no global lock. After commit, the publisher (fast path) or any relay numbers
every committed event that has none yet, in one short transaction under an advisory lock, so
sequencer runs never interleave: every event numbered by a run gets a higher position than every
event numbered by the runs before it, and all of them are visible once that run commits. A reader
that tracks `position` therefore never skips an event: an event still uncommitted is invisible to
the run and is numbered by a later one, with a higher position.

A run is one statement (`sql.SEQUENCE_RUN`, a database function): one round trip, and the lock
is held only while the database works, never while a client process waits for its turn on a busy
machine. A run that finds nothing to number writes nothing, so it costs no WAL flush; busy
publishers find their events already numbered by the run of a neighbour.

SQLite (the zero-setup `make run`) has one writer at a time; a trigger numbers each event as it is
inserted (migration 0006).
"""

from __future__ import annotations

from django.db import connection

from domain_events import sql
from domain_events.conf import domain_events_settings

BATCH = 10_000
POSITIONS_PAYLOAD = "positions"


def sequence(*, wait: bool = True) -> int:
    """Number every committed event without a position; returns how many were numbered.

    Wakes position readers (NOTIFY with payload `positions`) when it numbered any. `wait=False`
    (relays): if another run is under way, return at once rather than queue behind it; that run
    numbers what had committed when it began, and what commits later wakes the relays again.
    """
    if connection.vendor != "postgresql":
        return 0
    channel = domain_events_settings()["NOTIFY_CHANNEL"]
    statement = sql.SEQUENCE_RUN if wait else sql.SEQUENCE_RUN_UNLESS_BUSY
    total = 0
    while True:
        # One statement: in autocommit it is a transaction of its own, which ends the lock.
        with connection.cursor() as cursor:
            cursor.execute(statement, [BATCH, channel, POSITIONS_PAYLOAD])
            numbered = cursor.fetchone()[0]
        if numbered < 0:
            return total
        total += numbered
        if numbered < BATCH:
            return total


def head() -> int:
    """The highest position assigned so far (0 before the first event)."""
    with connection.cursor() as cursor:
        cursor.execute(sql.HEAD)
        return cursor.fetchone()[0]
