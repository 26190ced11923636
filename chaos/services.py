"""The private services and the supervised processes of a chaos run.

Every process runs in its own session, so that a kill reaches its children too (a Celery or
gunicorn master's workers), and everything a run started is stopped by `Supervisor.stop_all()`
on every exit path. PostgreSQL (`testsupport.postgres`) and Redis are private instances on free ports in a
temporary folder: the shared ones of the machine are never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from testsupport.postgres import missing_postgres_programs

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent


class ChaosError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], object], *, timeout: float, what: str, interval: float = 0.1) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ChaosError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def missing_binaries() -> list[str]:
    """What a chaos run needs from the machine and does not find."""
    missing = missing_postgres_programs("initdb", "pg_ctl")
    if shutil.which("redis-server") is None:
        missing.append("redis-server")
    return missing


class PrivateRedis:
    """A redis-server on a free port with no persistence: stopping it loses every queued message."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.log = log_dir / "redis.log"
        self.popen: subprocess.Popen | None = None

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ChaosError("redis-server is required")
        argv = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            str(self.log),
        ]
        self.popen = subprocess.Popen(
            argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(lambda: _port_open(self.port), timeout=20, what="redis-server to listen")

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)
        self.popen = None


class Supervised:
    """A long-running project process that the run kills (SIGKILL) and restarts as a supervisor would."""

    def __init__(
        self,
        name: str,
        kind: str,
        argv: list[str],
        env: dict[str, str],
        log_dir: Path,
        ready: Callable[[Supervised], bool],
    ) -> None:
        self.name, self.kind, self.argv, self.env = name, kind, argv, env
        self.log_path = log_dir / f"{name}.log"
        self.ready = ready
        self.popen: subprocess.Popen | None = None
        self.restarts = 0

    def start(self) -> None:
        log = self.log_path.open("ab")
        self._offset = self.log_path.stat().st_size
        self.popen = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def new_output(self) -> str:
        with self.log_path.open("rb") as f:
            f.seek(self._offset)
            return f.read().decode(errors="replace")

    def wait_ready(self, timeout: float = 90) -> None:
        def up() -> bool:
            if self.popen is None or self.popen.poll() is not None:
                raise ChaosError(f"{self.name} exited:\n{self.new_output()[-3000:]}")
            return self.ready(self)

        wait_until(up, timeout=timeout, what=f"{self.name} to be ready", interval=0.2)

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)
        try:
            self.popen.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)

    def children(self) -> list[int]:
        """The live processes the leader forked (gunicorn's or Celery's workers)."""
        if self.popen is None:
            return []
        path = Path(f"/proc/{self.popen.pid}/task/{self.popen.pid}/children")
        with contextlib.suppress(OSError):
            return [int(pid) for pid in path.read_text().split()]
        return []

    def restart_after_kill(self) -> None:
        self.kill_group()
        self.restarts += 1
        self.start()


class Supervisor:
    def __init__(self) -> None:
        self.processes: list[Supervised] = []
        # Held while a process is killed or restarted, and by `stop_all`: once it has run, nothing
        # is started again (the fault thread may still be between two faults).
        self.lock = threading.RLock()
        self.closed = False
        self.stopping = threading.Event()  # cuts short a fault's wait (a Redis outage) on the way out

    def add(self, process: Supervised) -> Supervised:
        self.processes.append(process)
        process.start()
        return process

    def of_kind(self, kind: str) -> list[Supervised]:
        return [p for p in self.processes if p.kind == kind]

    def stop_all(self) -> None:
        self.stopping.set()
        with self.lock:
            self.closed = True
        for process in reversed(self.processes):
            with contextlib.suppress(Exception):
                process.kill_group(signal.SIGKILL)
        self.processes.clear()
