"""Tests that run the real thing: relays, Celery workers and web servers as subprocesses.

Used by every module's tests; nothing here runs in production, and no runtime module imports it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def wait_until(
    predicate: Callable[[], object], *, timeout: float = 30, interval: float = 0.1, what: str = ""
) -> object:
    """Poll `predicate` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_up(url: str) -> bool:
    """Whether `url` answers 200 now (a server that is starting, or gone, does not)."""
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def subprocess_env(**overrides: str) -> dict[str, str]:
    """The environment for a subprocess that must see the test database and broker.

    A subprocess runs as served: its in-process handlers are the relays' (`OUTBOX_RUN_ON_COMMIT`
    off, the production default), whatever the test process itself does (`config/settings_test.py`).
    """
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {
        "OUTBOX_RUN_ON_COMMIT": "false",
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        "DATABASE_URL": url,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "PYTHONUNBUFFERED": "1",
    }
    env.update(overrides)
    return env


def celery_worker_argv(
    name: str, *, concurrency: int = 2, python: str = sys.executable, quiet: bool = False
) -> list[str]:
    """`celery -A config worker` as tests and benchmarks start it: quick to be ready; `quiet`
    leaves out the banner (so that every line is a log line)."""
    return [
        python,
        "-m",
        "celery",
        "-A",
        "config",
        *(["--quiet"] if quiet else []),
        "worker",
        "--loglevel",
        "INFO",
        "--concurrency",
        str(concurrency),
        "--hostname",
        f"{name}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


class ManagedProcess:
    """A subprocess in its own process group, with its output in a log file."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 30) -> None:
        def seen() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.popen.returncode}:\n{self.output()[-3000:]}")
            return text in self.output()

        wait_until(seen, timeout=timeout, what=f"{text!r} from {self.name}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a Celery worker's children too)."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
            self._log.close()


class ProcessRunner:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: list[ManagedProcess] = []

    def start(self, name: str, argv: list[str], **env_overrides: str) -> ManagedProcess:
        process = ManagedProcess(name, argv, self.log_dir, subprocess_env(**env_overrides))
        self.processes.append(process)
        return process

    def relay(self, name: str = "relay", *extra: str, **env_overrides: str) -> ManagedProcess:
        process = self.start(
            name, [sys.executable, "manage.py", "run_outbox_relay", "--verbosity", "2", *extra], **env_overrides
        )
        process.wait_for_output("running")
        return process

    def worker(
        self, name: str = "worker", *extra: str, concurrency: int = 2, quiet: bool = False, **env_overrides: str
    ) -> ManagedProcess:
        argv = [*celery_worker_argv(name, concurrency=concurrency, quiet=quiet), *extra]
        process = self.start(name, argv, **env_overrides)
        process.wait_for_output(" ready.", timeout=60)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            process.kill(signal.SIGKILL)
