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
