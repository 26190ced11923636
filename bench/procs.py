"""Processes the bench starts: workers that wait at a start line, and services (relays, Celery, gunicorn).

Every process runs in its own session so that stopping it reaches its children too (a Celery or
gunicorn master's workers). `stop_all()` runs on every exit path of `bench/run.py`.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
_started: list[subprocess.Popen] = []


class BenchError(RuntimeError):
    pass


def _spawn(argv: list[str], env: dict[str, str], **kwargs) -> subprocess.Popen:
    popen = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True, **kwargs)
    _started.append(popen)
    return popen


def _stop(popen: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    if popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, sig)
            # A paused process (Bench.pause) takes its signal once it runs again.
            os.killpg(popen.pid, signal.SIGCONT)
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(5)
    else:
        # The leader is gone; make sure nothing it started outlives it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)


def stop_all() -> None:
    while _started:
        _stop(_started.pop())


class Worker:
    """A bounded job: sets itself up, prints `ready`, waits for `go` on stdin, prints one JSON line."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.ready = False
        self.popen = _spawn(
            argv, env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, bufsize=1
        )

    def _readline(self, deadline: float) -> str:
        assert self.popen.stdout is not None
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([self.popen.stdout], [], [], remaining)[0]:
            raise BenchError(f"{self.name}: no answer in time; see {self.log_path}")
        line = self.popen.stdout.readline()
        if not line:
            self.popen.wait(5)
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise BenchError(f"{self.name} exited with {self.popen.returncode}:\n{tail}")
        return line.strip()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready:
            self.ready = self._readline(deadline) == "ready"

    def go(self) -> None:
        self.tell("go")

    def tell(self, line: str) -> None:
        """Send one line to the worker's stdin (`go` at the start line; `stop` to a worker that waits for it)."""
        assert self.popen.stdin is not None
        try:
            self.popen.stdin.write(line + "\n")
            self.popen.stdin.flush()
        except BrokenPipeError:
            # It ended on its own (a cap on its time, or a failure): its result or log says which.
            pass

    def result(self, timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            line = self._readline(deadline)
            if line.startswith("{"):
                self.popen.wait(15)
                self._log.close()
                return json.loads(line)

    def done(self) -> bool:
        return self.popen.poll() is not None


class Service:
    """A long-running process with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = _spawn(argv, env, stdout=self._log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.popen.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.popen.returncode}:\n{self.output()[-2000:]}")
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name}: {text!r} not seen in {timeout}s; see {self.log_path}")
            time.sleep(0.05)

    def cpu(self) -> float:
        """CPU seconds of the service and its children, as far as they are alive."""
        return session_cpu(self.popen.pid)

    def peak_rss(self) -> list[float]:
        """Peak resident memory of each of the service's live processes, in MiB, largest first."""
        return session_peak_rss(self.popen.pid)

    def signal(self, sig: int) -> None:
        """Send `sig` to every process of the service (SIGSTOP pauses it, SIGCONT resumes it)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def reset_peak_rss(self) -> None:
        """Make each live process's peak resident memory its present one (Linux's clear_refs, 5)."""
        for pid in session_pids(self.popen.pid):
            with contextlib.suppress(OSError):
                Path(f"/proc/{pid}/clear_refs").write_text("5")

    def stop(self) -> None:
        _stop(self.popen)
        if self.popen in _started:
            _started.remove(self.popen)
        self._log.close()


def start_line(workers: list[Worker], timeout: float = 60) -> float:
    """Wait until every worker is ready, release them together; returns the start time."""
    for worker in workers:
        worker.wait_ready(timeout)
    started = time.time()
    for worker in workers:
        worker.go()
    return started


# --- CPU accounting: what a figure costs, whatever else the machine is doing --------------------

TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after it.
    return raw[raw.rindex(")") + 2 :].split()


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of one live process (0 if it is gone)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / TICKS if fields else 0.0


def session_pids(sid: int) -> list[int]:
    """The live processes of session `sid` (a service and the children it forked)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and int(fields[3]) == sid:
                pids.append(int(entry.name))
    return pids


def session_cpu(sid: int) -> float:
    """CPU seconds of every live process in session `sid` (a service and the children it forked),
    with what each has waited for: a child that exits (a recycled worker) moves into its parent's
    figure instead of vanishing from the sum."""
    total = 0.0
    for pid in session_pids(sid):
        fields = _stat_fields(pid)
        if fields:
            total += sum(int(f) for f in fields[11:15]) / TICKS
    return total


def session_peak_rss(sid: int) -> list[float]:
    """Peak resident memory (VmHWM) of every live process in session `sid`, in MiB, largest first."""
    peaks = []
    for pid in session_pids(sid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return sorted(peaks, reverse=True)


def run_cpu() -> float:
    """CPU seconds of this process and everything it started: the finished (waited for, with what
    they waited for) and the live processes of every session it started, with their own finished
    children. Backends of the database are not in it (see `Bench.backends_total_cpu`)."""
    import resource

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    sids = {p.pid for p in _started}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and int(fields[3]) in sids:
                total += sum(int(f) for f in fields[11:15]) / TICKS
    return total


class CpuMeter:
    """In a worker: CPU spent by this process and by its database backend since `start()`."""

    def __init__(self, backend_pid: int | None) -> None:
        self.backend_pid = backend_pid
        self.client = self.server = 0.0

    def start(self) -> None:
        self.client = time.process_time()
        self.server = cpu_of(self.backend_pid) if self.backend_pid else 0.0

    def spent(self) -> dict[str, float]:
        return {
            "cpu_client": time.process_time() - self.client,
            "cpu_server": (cpu_of(self.backend_pid) - self.server) if self.backend_pid else 0.0,
        }


def child_ready(meter: CpuMeter | None = None) -> None:
    """In a worker: announce readiness and block until the start signal."""
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("no start signal")
    if meter is not None:
        meter.start()


def stop_asked() -> bool:
    """In a worker, after the start line: whether `stop` has arrived on stdin (never blocks)."""
    return bool(select.select([sys.stdin], [], [], 0)[0]) and sys.stdin.readline().strip() == "stop"


def child_report(meter: CpuMeter | None = None, **values: object) -> None:
    if meter is not None:
        values.update(meter.spent())
    print(json.dumps(values), flush=True)
