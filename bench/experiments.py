"""Proposed changes to `domain_events`, tried on a copy: patched in at start-up, never edited in place.

    BENCH_EXPERIMENTS=name[,name…] make bench

Each experiment is one function that patches the running process (web, publisher, relay, worker:
every process loads `bench.settings`, whose bench app applies them in `ready()`). A figure taken
with an experiment on is compared with the same run's ceilings, like every other figure; the
header names the experiments that were on. An experiment that proves itself moves into
`domain_events` and leaves this file (the one-statement record and lock did).
"""

from __future__ import annotations

import os
from collections.abc import Callable

EXPERIMENTS: dict[str, Callable[[], None]] = {}


def active() -> list[str]:
    return [name.strip() for name in os.environ.get("BENCH_EXPERIMENTS", "").split(",") if name.strip()]


def apply_all() -> None:
    for name in active():
        try:
            EXPERIMENTS[name]()
        except KeyError:
            known = ", ".join(EXPERIMENTS) or "none at the moment"
            raise SystemExit(f"unknown experiment {name!r}; known: {known}") from None


def sequencer_async_commit() -> None:
    """The sequencer's transaction commits without waiting for its WAL flush.

    The flush is what a run holds the sequencer's lock longest for, and runs queue on that lock.
    The numbering guarantee itself holds (runs stay serialized; a run's positions are visible only
    once it has committed). What changes is durability: a crash of the database server can lose
    the last runs' positions (and rewind the sequence), so those events are numbered again. Every
    reader that committed anything in the database after seeing those positions forces the flush
    of the run too (WAL is flushed in order), but something sent outside the database (a webhook,
    a Celery message) could have carried a position that no longer exists. Not adopted for that.
    """
    from domain_events import sql

    sql.SEQUENCE_RUN = "SELECT domain_events_sequence(%s, %s, %s), set_config('synchronous_commit', 'off', true)"


EXPERIMENTS["sequencer_async_commit"] = sequencer_async_commit
