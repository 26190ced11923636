"""Admission under backlog: a publisher may refuse new work while the handlers are far behind.

The backlog's age is that of the oldest delivery never yet attempted (pending, not held behind an
earlier one): work that is merely retrying on its schedule, or waits for a failing blocker, does
not count, so one broken receiver never turns orders away. It is read at most once a second per
process, from the claims' partial index (open deliveries only).
"""

from __future__ import annotations

import math
import threading
import time

from django.db.models import Min
from django.utils import timezone

from domain_events.conf import domain_events_settings
from domain_events.models import Delivery

CHECK_EVERY = 1.0

_lock = threading.Lock()
_cached: tuple[float, float] = (-math.inf, 0.0)  # (monotonic time read, backlog seconds)


class Backlogged(Exception):
    """The handlers are further behind than `ADMISSION_MAX_BACKLOG`; try again in `retry_after` s."""

    def __init__(self, backlog: float, retry_after: int) -> None:
        super().__init__(f"the oldest delivery not yet attempted waits for {backlog:.0f} s")
        self.backlog = backlog
        self.retry_after = retry_after


def backlog_seconds() -> float:
    """Age of the oldest delivery never yet attempted, in seconds (0 without one)."""
    global _cached
    now = time.monotonic()
    with _lock:
        read_at, seconds = _cached
        if now - read_at < CHECK_EVERY:
            return seconds
    oldest = Delivery.objects.filter(status=Delivery.Status.PENDING, attempts=0, held_by__isnull=True).aggregate(
        oldest=Min("created_at")
    )["oldest"]
    seconds = max(0.0, (timezone.now() - oldest).total_seconds()) if oldest else 0.0
    with _lock:
        _cached = (now, seconds)
    return seconds


def forget() -> None:
    """Read the backlog afresh next time (tests)."""
    global _cached
    with _lock:
        _cached = (-math.inf, 0.0)


def admit() -> None:
    """Raise `Backlogged` when new work should wait: the backlog is past `ADMISSION_MAX_BACKLOG`."""
    limit = domain_events_settings()["ADMISSION_MAX_BACKLOG"].total_seconds()
    if limit <= 0:
        return
    backlog = backlog_seconds()
    if backlog > limit:
        # Come back when about the part over the limit has been worked off.
        raise Backlogged(backlog, retry_after=max(1, min(30, math.ceil(backlog - limit))))
