"""Helpers for tests that run the real thing: relays and Celery workers as subprocesses.

Used by every module's end-to-end tests; nothing here runs in production.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

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


def subprocess_env(**overrides: str) -> dict[str, str]:
    """The environment for a subprocess that must see the test database and broker."""
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {
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


def run_deliveries_now(handler: str):
    """Run, here and now, every open delivery of `handler`, as a relay or a worker would."""
    from datetime import timedelta

    from django.utils import timezone

    from domain_events.executor import execute, run_due_here
    from domain_events.fastpath import hand_on_follow_ups
    from domain_events.handoff import claim_for_workers
    from domain_events.models import Delivery
    from domain_events.subscriptions import Mode, subscriptions

    Delivery.objects.filter(handler=handler, status__in=Delivery.OPEN).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1), sent_at=None, started_at=None
    )
    subscription = subscriptions.get(handler)
    if subscription is not None and subscription.mode is Mode.CELERY:
        claims, _ = claim_for_workers(1000, [subscription])
        return hand_on_follow_ups(execute(claims))
    return hand_on_follow_ups(run_due_here(1000, [handler]))


@contextlib.contextmanager
def subscriptions_without(*names: str):
    """Run the block as a process whose code lacks the handlers `names` (older code in a deploy)."""
    from domain_events.subscriptions import subscriptions

    saved = subscriptions.remove(*names)
    try:
        yield
    finally:
        for subscription in saved:
            subscriptions.add(subscription)


class TcpProxy:
    """A TCP forwarder on loopback in front of a real server: tests cut the way to the server and
    restore it, which is what its clients see of a server restart or a network outage.

    `down()` resets every open connection and refuses new ones until `up()` listens again on the
    same port; `cut_after(n)` lets `n` more bytes through towards the server and then goes down,
    so that a connection dies in the middle of whatever the client was sending; `swallow_replies()`
    lets everything through towards the server but nothing back, so the server acts on what the
    client sent while the client never hears of it (a lost acknowledgement).
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._budget: int | None = None
        self._swallow = False
        self.port = 0
        self.up()

    def up(self) -> None:
        with self._lock:
            if self._listener is not None:
                return
            self._budget = None
            self._swallow = False
            self._listener = socket.create_server(("127.0.0.1", self.port))
            self.port = self._listener.getsockname()[1]
            threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            # Shut down first: that wakes the thread blocked in accept(), which holds the port.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                # Linger 0: the peer gets a reset, as from a server that went away.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def cut_after(self, n: int) -> None:
        with self._lock:
            self._budget = n

    def swallow_replies(self) -> None:
        with self._lock:
            self._swallow = True

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down()
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    server.close()
                    return
                self._sockets |= {client, server}
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if upstream and not self._spend(len(chunk)):
                    allowed = max(0, self._budget or 0)
                    if allowed:
                        sink.sendall(chunk[:allowed])
                    self.down()
                    return
                if not upstream and self._swallow:
                    continue
                sink.sendall(chunk)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def _spend(self, n: int) -> bool:
        with self._lock:
            if self._budget is None:
                return True
            if n > self._budget:
                return False
            self._budget -= n
            return True
