"""Ctrl-C on `make run`: honcho, started as the Makefile starts it on the zero-setup default, stops
the web server, the worker, the relay and the webhook sweep well before it would kill them, and
none of them says ERROR or prints a traceback on the way out."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from honcho.manager import KILL_WAIT

from e2e.sqlite import manage
from testsupport.processes import ROOT, free_port, wait_until

pytestmark = pytest.mark.e2e

PROCESSES = ("web", "worker", "relay", "webhooks")
HONCHO = Path(sys.executable).parent / "honcho"


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_ctrl_c_stops_every_process_in_time_and_without_an_error(sqlite_env):
    manage(sqlite_env, "migrate", "--no-input", "--verbosity", "0")
    port = free_port()
    env = {**sqlite_env, "WEB_PORT": str(port)}
    honcho = subprocess.Popen(
        [str(HONCHO), "start", "--no-colour", "-f", "Procfile", *PROCESSES],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(honcho.stdout), daemon=True)
    reader.start()

    def output() -> str:
        return "".join(lines)

    try:
        ready = {
            "web": lambda: listening(port),
            "worker": lambda: re.search(r"worker\.1 .*celery@\S+ ready", output()),
            "relay": lambda: re.search(r"relay\.1 .*Outbox relay \S+ running", output()),
            "webhooks": lambda: "webhooks sweep running" in output(),
        }
        for name, check in ready.items():
            wait_until(check, timeout=60, what=f"{name} to be up:\n{output()[-3000:]}")

        asked = time.monotonic()
        honcho.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
        honcho.wait(timeout=KILL_WAIT + 10)
        took = time.monotonic() - asked
        reader.join(timeout=5)
    finally:
        if honcho.poll() is None:
            honcho.terminate()
            honcho.wait(timeout=KILL_WAIT + 5)
        # Whatever honcho left behind (each process leads its own session).
        for pid in re.findall(r"started \(pid=(\d+)\)", output()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(pid), signal.SIGKILL)

    text = output()
    assert all(f"{name}.1 stopped" in text for name in PROCESSES), text[-3000:]
    assert "SIGKILL" not in text, text[-3000:]
    assert took < KILL_WAIT, f"stopped after {took:.1f} s\n{text[-3000:]}"
    noisy = [line for line in text.splitlines() if "ERROR" in line or "Traceback" in line]
    assert not noisy, "\n".join(noisy)
    assert "-------------- celery@" not in text, "the worker's banner is left out"
