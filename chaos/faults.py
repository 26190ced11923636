"""The faults of a chaos run: SIGKILLs of real processes, a Redis outage, a PostgreSQL restart.

The processes killed: a gunicorn worker, a Celery worker or one of its pool processes, a relay,
the webhook sweep, and the consumer of the distributor's notices (`consume_inbound`)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from chaos.services import PrivateRedis, Supervisor
from testsupport.postgres import PostgresCluster

KILL_KINDS = ("web", "worker", "relay", "sweep", "consumer")
# The fault kinds of the settle table, in its order (a worker kill is of its master or of one
# pool process).
FAULT_KINDS = (
    "web SIGKILL",
    "worker SIGKILL",
    "pool process SIGKILL",
    "relay SIGKILL",
    "sweep SIGKILL",
    "consumer SIGKILL",
    "Redis down",
    "PostgreSQL restart",
)


@dataclass(frozen=True)
class Fault:
    """One injected fault: its kind (`FAULT_KINDS`), when it began and when it was over (the same
    moment for a kill; Redis back or PostgreSQL accepting connections again otherwise)."""

    kind: str
    start: float
    end: float
    what: str


class FaultInjector(threading.Thread):
    """Every `kill_every` seconds SIGKILLs a random web worker, Celery worker, relay, the webhook sweep
    or the inbound consumer, of the kinds killed fewer than `min_kills` times while there are any
    (and restarts it as a supervisor would); once the load is `redis_at` done it stops Redis for
    `redis_outage` seconds, once it is `postgres_at` done it restarts PostgreSQL. It goes on
    until the load has finished and every kind was killed at least `min_kills` times."""

    def __init__(
        self,
        *,
        supervisor: Supervisor,
        postgres: PostgresCluster,
        redis: PrivateRedis,
        progress: Callable[[], float],
        load_finished: Callable[[], bool],
        kill_every: float,
        redis_outage: float,
        min_kills: int,
        seed: int,
        log: Callable[[str], None],
        redis_at: float = 0.25,
        postgres_at: float = 0.55,
    ) -> None:
        super().__init__(daemon=True)
        self.supervisor, self.postgres, self.redis = supervisor, postgres, redis
        self.progress, self.load_finished = progress, load_finished
        self.kill_every, self.redis_outage, self.min_kills = kill_every, redis_outage, min_kills
        self.redis_at, self.postgres_at = redis_at, postgres_at
        self.random = random.Random(seed)
        self.log = log
        self.counts: Counter[str] = Counter()
        self.faults: list[Fault] = []
        self.last_fault_end = time.time()
        self.error: BaseException | None = None
        self.failed_faults: list[str] = []
        self.unplanned_exits: Counter[str] = Counter()
        self.stopping = supervisor.stopping

    def _record(self, kind: str, what: str, fault: str, start: float | None = None) -> None:
        self.counts[kind] += 1
        self.last_fault_end = time.time()
        self.faults.append(Fault(fault, start or self.last_fault_end, self.last_fault_end, what))
        self.log(f"fault: {kind} ({what})")

    def _done(self) -> bool:
        return (
            self.load_finished()
            and all(self.counts[f"kill_{kind}"] >= self.min_kills for kind in KILL_KINDS)
            and self.counts["redis_outage"] >= 1
            and self.counts["postgres_restart"] >= 1
        )

    def run(self) -> None:
        try:
            next_fault = time.monotonic() + self._pause()
            while not self.stopping.is_set() and not self._done():
                self.stopping.wait(0.5)
                self.watch()
                if time.monotonic() < next_fault:
                    continue
                try:
                    with self.supervisor.lock:
                        if self.supervisor.closed:
                            return
                        self.inject()
                except Exception as exc:  # a fault that could not be injected: said, and the run goes on
                    self.failed_faults.append(repr(exc))
                    self.log(f"fault not injected: {exc!r}")
                next_fault = time.monotonic() + self._pause()
        except BaseException as exc:  # reported by the run as a failure
            self.error = exc

    def _pause(self) -> float:
        return self.kill_every * self.random.uniform(0.5, 1.5)

    def inject(self) -> None:
        progress = self.progress()
        if not self.counts["redis_outage"] and (progress >= self.redis_at or self.load_finished()):
            self.stop_redis()
        elif not self.counts["postgres_restart"] and (progress >= self.postgres_at or self.load_finished()):
            self.restart_postgres()
        else:
            self.kill_one()

    def watch(self) -> None:
        """Restart a process that exited on its own, as a supervisor (systemd, Kubernetes) would,
        and note it: an exit nobody caused is a finding of the run."""
        with self.supervisor.lock:
            if not self.supervisor.closed:
                self._restart_exited()

    def _restart_exited(self) -> None:
        for process in self.supervisor.processes:
            if process.popen is not None and process.popen.poll() is not None:
                code = process.popen.returncode
                self.unplanned_exits[process.name] += 1
                self.log(f"{process.name} exited on its own (exit {code}): restarting it; see {process.log_path}")
                process.restart_after_kill()

    def _next_kind(self) -> str:
        """A kind still short of `min_kills` first, while the load runs too: a kill made after the
        load has settled finds no order in flight, and says nothing of recovery."""
        behind = [k for k in KILL_KINDS if self.counts[f"kill_{k}"] < self.min_kills]
        return self.random.choice(behind or KILL_KINDS)

    def kill_one(self) -> None:
        kind = self._next_kind()
        process = self.random.choice(self.supervisor.of_kind(kind))
        if kind == "web":
            # gunicorn's master is the supervisor of its workers: it forks a new one at once.
            children = process.children()
            if not children:
                return
            pid = self.random.choice(children)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._record("kill_web", f"gunicorn worker {pid}", "web SIGKILL")
            return
        children = process.children()
        if kind == "worker" and children and self.random.random() < 0.5:
            # One pool process mid-task: the Celery master replaces it.
            pid = self.random.choice(children)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._record("kill_worker", f"{process.name} pool process {pid}", "pool process SIGKILL")
            return
        pid = process.popen.pid if process.popen else 0
        process.restart_after_kill()
        self._record(f"kill_{kind}", f"{process.name} {pid}, restarted", f"{kind} SIGKILL")

    def stop_redis(self) -> None:
        self.log(f"fault: redis down for {self.redis_outage:.0f} s")
        start = time.time()
        self.redis.stop()
        self.last_fault_end = time.time()
        self.stopping.wait(self.redis_outage)
        self.redis.start()
        self._record("redis_outage", f"{self.redis_outage:.0f} s", "Redis down", start)

    def restart_postgres(self) -> None:
        start = time.time()
        self.postgres.restart()
        self._record("postgres_restart", "pg_ctl restart -m fast", "PostgreSQL restart", start)
