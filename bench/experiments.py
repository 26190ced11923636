"""Proposed changes to `domain_events`, tried on a copy: patched in at start-up, never edited in place.

    BENCH_EXPERIMENTS=own_lock_waits make bench

Each experiment is one function that patches the running process (web, publisher, relay, worker:
every process loads `bench.settings`, whose bench app applies them in `ready()`). A figure taken
with an experiment on is compared with the same run's ceilings, like every other figure.
"""

from __future__ import annotations

import os
from collections.abc import Callable


def own_lock_waits() -> None:
    """The executor waits for the row lock on deliveries it holds a lease on, instead of skipping them.

    A relay's claim scan (`FOR UPDATE SKIP LOCKED ... LIMIT`) can lock a row that another relay has
    just claimed: the scan locks it, re-checks it, drops it (no longer due) and keeps the lock until
    its own claim commits. The claimant's executor meanwhile locks with SKIP LOCKED too, skips its
    own claim, and the delivery waits for the lease (60 s) to expire. The lease token already says
    whose delivery it is, so the executor can simply wait the few milliseconds.
    """
    from domain_events.models import Delivery

    manager = Delivery.objects

    def select_for_update(*args, skip_locked: bool = False, of: tuple = (), **kwargs):
        if of == ("self",):  # only the executor asks for `of=("self",)`
            skip_locked = False
        queryset = manager.get_queryset()
        return queryset.select_for_update(*args, skip_locked=skip_locked, of=of, **kwargs)

    manager.select_for_update = select_for_update


def coalesce_notify() -> None:
    """A relay woken by NOTIFY lingers a moment and swallows the notifications queued meanwhile.

    Every committing publisher notifies every relay; a relay that claims at each notification
    claims a handful of deliveries at a time (and K relays race for the same handful), so the
    per-batch work (claim transaction, lock, ordering check, commit) is paid per event. Waiting
    BENCH_RELAY_LINGER seconds (default 0.02) lets a batch gather; handlers start that much later.
    """
    import time

    import psycopg

    from domain_events.relay import Relay

    linger = float(os.environ.get("BENCH_RELAY_LINGER", "0.02"))
    original = Relay._wait

    def _wait(self: Relay) -> None:
        if self._listener is None:
            original(self)
            return
        try:
            woken = False
            for _ in self._listener.notifies(timeout=self.poll_interval, stop_after=1):
                woken = True
            if woken:
                time.sleep(linger)
                for _ in self._listener.notifies(timeout=0):
                    pass
        except psycopg.Error:
            original(self)

    Relay._wait = _wait


EXPERIMENTS: dict[str, Callable[[], None]] = {"own_lock_waits": own_lock_waits, "coalesce_notify": coalesce_notify}


def active() -> list[str]:
    return [name.strip() for name in os.environ.get("BENCH_EXPERIMENTS", "").split(",") if name.strip()]


def apply_all() -> None:
    for name in active():
        try:
            EXPERIMENTS[name]()
        except KeyError:
            raise SystemExit(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}") from None
