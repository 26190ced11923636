"""The readers' head: the highest position below which no event can still commit.

A position is drawn from a sequence as its event is inserted, so positions follow insertion order,
not commit order: a transaction that drew p may commit after one that drew p+1. A position reader
that moved its checkpoint past p+1 while p was still open would skip p for good. So readers read
only up to the fenced head:

1. read L, the last position drawn by anyone;
2. then list the transactions still open in this database that hold the events table's write lock
   (ROW EXCLUSIVE). An INSERT takes it before it runs, so before its rows draw their positions, and
   keeps it until the transaction ends (migration 0014): every transaction that may still commit a
   position ≤ L is on that list, and a transaction that writes no event is not;
3. every position ≤ L is final once all of them have ended: committed (and so visible to the next
   statement) or rolled back (a gap that stays one).

Each process keeps the fences it has set and resolves them on every look; its head is the highest
L whose transactions have all ended. In a quiet database a fence resolves on the look that sets it.
The oldest open transaction writing events holds every reader back: `/metrics` shows its age, and a fence
left unresolved for longer than `READER_HELD_WARNING` logs the transactions that hold it.

On SQLite, with one writer at a time, no fence is needed: the head is the highest position.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.utils import timezone

from domain_events import sql
from domain_events.conf import domain_events_settings

logger = logging.getLogger(__name__)

# Fences a process keeps waiting at most: past this the newest waiting one is replaced (each fence
# is safe alone, so dropping one only delays the head).
MAX_FENCES = 64


@dataclass(frozen=True)
class Writer:
    """An open transaction of this database that writes events: its virtual transaction id, and
    (`xact_start` is known for our own role only) its backend's details."""

    transaction: str
    pid: int | None  # None for a prepared transaction, which no backend runs
    application_name: str
    xact_start: datetime | None


@dataclass
class _Fence:
    drawn: int
    waiting_for: frozenset[str]
    since: float
    warned: bool = False


class Fence:
    """One process's view of the head (thread-safe: relays, web threads and tests share it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._head = 0
        self._fences: list[_Fence] = []
        self.writers: list[Writer] = []

    def reset(self) -> None:
        """Forget every fence (the database was replaced: tests, a restore)."""
        with self._lock:
            self._head = 0
            self._fences = []
            self.writers = []

    def look(self) -> int:
        """Read the database once, resolve what can be resolved, and return the head."""
        if connection.vendor != "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(sql.HEAD)
                return cursor.fetchone()[0]
        with connection.cursor() as cursor:
            cursor.execute(sql.FENCE)
            drawn, holders, pids, apps, starts = cursor.fetchone()
        now = time.monotonic()
        open_now = frozenset(holders)
        writers = [Writer(*row) for row in zip(holders, pids, apps, starts, strict=True)]
        with self._lock:
            self.writers = writers
            if drawn < self._head:
                # The sequence went back: a new database under the same process (tests, a restore).
                self._head, self._fences = 0, []
            waiting = []
            for fence in self._fences:
                if fence.waiting_for & open_now:
                    waiting.append(fence)
                else:
                    self._head = max(self._head, fence.drawn)
            if drawn > self._head:
                if not open_now:
                    self._head = drawn
                    waiting = []
                elif not waiting or waiting[-1].drawn < drawn:
                    fence = _Fence(drawn, open_now, now)
                    if len(waiting) >= MAX_FENCES:
                        waiting[-1] = fence
                    else:
                        waiting.append(fence)
            self._fences = [f for f in waiting if f.drawn > self._head]
            held = self._held_too_long(now)
            head = self._head
        if held is not None:
            self._warn(held)
        return head

    def settled(self, timeout: float = 30.0) -> int:
        """The head once everything drawn by now is final: looks until then, or `timeout` (then
        the head as it is, which is safe but may be behind)."""
        deadline = time.monotonic() + timeout
        head = self.look()
        while self.pending() and time.monotonic() < deadline:
            time.sleep(0.005)
            head = self.look()
        return head

    def caught_up(self, timeout: float, every: float = 0.005) -> int:
        """The head once what was drawn by this first look is final, looking again `every` seconds
        for at most `timeout` (then the head as it is). Unlike `settled`, positions drawn after the
        first look are not waited for, so a busy database does not keep it looking."""
        deadline = time.monotonic() + timeout
        head = self.look()
        with self._lock:
            target = self._fences[-1].drawn if self._fences else head
        while head < target and time.monotonic() < deadline:
            time.sleep(every)
            head = self.look()
        return head

    def pending(self) -> bool:
        """Whether a fence waits: a position drawn is not yet known to be final."""
        with self._lock:
            return bool(self._fences)

    def held_for(self) -> float:
        """How long the oldest waiting fence has waited, in seconds (0 when none waits)."""
        with self._lock:
            return time.monotonic() - self._fences[0].since if self._fences else 0.0

    def _held_too_long(self, now: float) -> _Fence | None:
        limit = domain_events_settings()["READER_HELD_WARNING"].total_seconds()
        if self._fences and not self._fences[0].warned and now - self._fences[0].since >= limit:
            self._fences[0].warned = True
            return self._fences[0]
        return None

    def _warn(self, fence: _Fence) -> None:
        holders = [w for w in self.writers if w.transaction in fence.waiting_for]
        named = ", ".join(
            f"pid {w.pid} ({w.application_name or 'no application_name'}, transaction {w.transaction})" for w in holders
        )
        logger.warning(
            "position readers are held at %d for %.0f s: positions up to %d wait for open transactions: %s",
            self._head,
            time.monotonic() - fence.since,
            fence.drawn,
            named or "ended since",
        )


FENCE = Fence()


def head() -> int:
    """This process's head after one look at the database."""
    return FENCE.look()


def settled_head(timeout: float = 30.0) -> int:
    """The head once every position drawn so far is final (see `Fence.settled`)."""
    return FENCE.settled(timeout)


def drawn() -> int:
    """The last position drawn, final or not (0 before the first event)."""
    query = sql.DRAWN if connection.vendor == "postgresql" else sql.HEAD
    with connection.cursor() as cursor:
        cursor.execute(query)
        return cursor.fetchone()[0]


def oldest_writer() -> tuple[Writer | None, float]:
    """The oldest open transaction of this database that writes events, and its age in seconds (0
    without one, or when its start is hidden from this role)."""
    FENCE.look()
    writers = FENCE.writers
    if not writers:
        return None, 0.0
    oldest = writers[0]
    age = (timezone.now() - oldest.xact_start).total_seconds() if oldest.xact_start else 0.0
    return oldest, max(0.0, age)
