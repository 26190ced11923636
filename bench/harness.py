"""What every benchmark shares: configuration, the bench database, child environments, tables."""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import conninfo

from bench.procs import PYTHON, ROOT, TICKS, BenchError, Service, Worker, cpu_of, run_cpu

RESULTS_DIR = ROOT / "bench" / "results"
# The bench drops and creates its database: only names in its own namespace (sw_bench by default).
DATABASE_PREFIX = "sw_"
# What `make bench` runs, in this order; BENCH_ONLY picks some.
BENCHMARKS = ("publish", "fanout", "orders", "saga", "admin", "readside", "webhooks", "history")


def schema_key() -> str:
    """What the migrated schema depends on: every migration and model file (and Django's version)."""
    import hashlib

    import django

    digest = hashlib.sha256(django.get_version().encode())
    files = [*ROOT.glob("*/migrations/*.py"), *ROOT.glob("bench/*/migrations/*.py"), *ROOT.glob("*/models.py")]
    files += [*ROOT.glob("bench/*/models.py"), ROOT / "bench" / "settings.py"]
    for path in sorted(files):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def with_database(url: str, name: str) -> str:
    """`url` with its database name replaced by `name`."""
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def env_ints(name: str, default: str) -> list[int]:
    return [int(x) for x in os.environ.get(name, default).split(",") if x.strip()]


@dataclass
class Config:
    database_url: str = "postgres://postgres@127.0.0.1:5432/sw_bench"
    broker_url: str = "redis://127.0.0.1:6379/5"
    events: int = 2000
    celery_events: int = 400
    publishers: int = 2
    relays: list[int] = field(default_factory=lambda: [1, 2, 4])
    fast_publishers: int = 4
    fast_path_relay: bool = True
    ceiling_procs: int = 4
    batch: int = 100
    seconds: float = 10.0
    http_clients: int = 6
    gunicorn_workers: int = 3
    orders_relayed: bool = True
    phase_orders: int = 400
    saga_orders: int = 200
    saga_tracing: bool = True
    saga_in_process: bool = True
    saga_latency_orders: int = 100
    saga_rounds: int = 3
    warmup: int = 10
    quick: bool = False
    only: list[str] = field(default_factory=lambda: list(BENCHMARKS))

    @classmethod
    def from_env(cls) -> Config:
        return cls(
            database_url=os.environ.get("BENCH_DATABASE_URL", cls.database_url),
            broker_url=os.environ.get("BENCH_BROKER_URL", cls.broker_url),
            events=env_int("BENCH_EVENTS", cls.events),
            celery_events=env_int("BENCH_CELERY_EVENTS", cls.celery_events),
            publishers=env_int("BENCH_PUBLISHERS", cls.publishers),
            relays=env_ints("BENCH_RELAYS", "1,2,4"),
            fast_publishers=env_int("BENCH_FAST_PUBLISHERS", cls.fast_publishers),
            fast_path_relay=os.environ.get("BENCH_FAST_PATH_RELAY", "1") not in ("0", "false", "no"),
            ceiling_procs=env_int("BENCH_CEILING_PROCS", cls.ceiling_procs),
            batch=env_int("BENCH_BATCH", cls.batch),
            seconds=env_float("BENCH_SECONDS", cls.seconds),
            http_clients=env_int("BENCH_HTTP_CLIENTS", cls.http_clients),
            gunicorn_workers=env_int("BENCH_GUNICORN_WORKERS", cls.gunicorn_workers),
            orders_relayed=os.environ.get("BENCH_ORDERS_RELAYED", "1") not in ("0", "false", "no"),
            phase_orders=env_int("BENCH_PHASE_ORDERS", cls.phase_orders),
            saga_orders=env_int("BENCH_SAGA_ORDERS", cls.saga_orders),
            saga_tracing=os.environ.get("BENCH_SAGA_TRACING", "1") not in ("0", "false", "no"),
            saga_in_process=os.environ.get("BENCH_SAGA_IN_PROCESS", "1") not in ("0", "false", "no"),
            saga_latency_orders=env_int("BENCH_SAGA_LATENCY_ORDERS", cls.saga_latency_orders),
            saga_rounds=env_int("BENCH_SAGA_ROUNDS", cls.saga_rounds),
            warmup=env_int("BENCH_WARMUP", cls.warmup),
            only=[x.strip() for x in os.environ.get("BENCH_ONLY", ",".join(BENCHMARKS)).split(",") if x.strip()],
        )


class Bench:
    """One run: the configuration, a connection to the bench database, logs, and the results."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.log_dir = RESULTS_DIR / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for old in self.log_dir.glob("*.log"):
            old.unlink()
        self.results: dict[str, object] = {}
        self._db: psycopg.Connection | None = None
        # The run's CPU meter (set by bench/run.py); `ServicesCpu` reads its backend samples.
        self.meter: RunMeter | None = None

    def say(self, text: str = "") -> None:
        print(text, flush=True)

    # --- database -----------------------------------------------------------------------

    def recreate_database(self) -> None:
        """Start every run from a freshly migrated database and an empty broker db: nothing left over counts.

        The database is a copy of `<name>_template`, which is migrated only when a migration (or a
        model) changed since it was made: copying takes a second, migrating many.
        """
        import redis

        params = conninfo.conninfo_to_dict(self.config.database_url)
        name = params.get("dbname")
        if not name or not name.startswith(DATABASE_PREFIX):
            raise BenchError(f"the bench only runs on a database named {DATABASE_PREFIX}*, not {name!r}")
        if self._db is not None:
            self._db.close()
        template, key = f"{name}_template", schema_key()
        admin = conninfo.make_conninfo(self.config.database_url, dbname="postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            made_for = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (template,)
            ).fetchone()
            if made_for is None or made_for[0] != key:
                started = time.monotonic()
                conn.execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{template}"')
                self.manage(
                    "migrate", "--no-input", BENCH_DATABASE_URL=with_database(self.config.database_url, template)
                )
                conn.execute(f"COMMENT ON DATABASE \"{template}\" IS '{key}'")
                self.say(f"(migrated the template database {template} in {time.monotonic() - started:.0f} s)")
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        try:
            redis.Redis.from_url(self.config.broker_url, socket_connect_timeout=2).flushdb()
        except redis.RedisError as exc:
            raise BenchError(f"Redis at {self.config.broker_url} is required: {exc}") from exc

    @property
    def db(self) -> psycopg.Connection:
        if self._db is None or self._db.closed:
            self._db = psycopg.connect(self.config.database_url, autocommit=True)
        return self._db

    def scalar(self, sql: str, params: tuple = ()) -> object:
        row = self.db.execute(sql, params).fetchone()
        return row[0] if row else None

    def reset_outbox(self, *extra_tables: str) -> None:
        """Empty the outbox (and `extra_tables`).

        TRUNCATE leaves the tables' statistics unknown, as on a fresh database, so the planner
        keeps to the indexes. An ANALYZE of the empty tables would be a different experiment:
        every session then caches sequential-scan plans for its foreign-key checks and trigger
        statements, and each insert costs more the longer the run (the ceiling's too).
        """
        outbox = ["domain_events_delivery", "domain_events_storedevent", "domain_events_stream"]
        tables = ", ".join([*outbox, *extra_tables])
        self.db.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")

    def wait_for_no_open_deliveries(self, timeout: float, interval: float = 0.01) -> float:
        """Poll until no delivery is pending or failed; returns the time it was first seen so."""
        deadline = time.monotonic() + timeout
        while True:
            if self.scalar(
                "SELECT NOT EXISTS (SELECT 1 FROM domain_events_delivery WHERE status IN ('pending', 'failed'))"
            ):
                return time.time()
            if time.monotonic() > deadline:
                open_count = self.scalar(
                    "SELECT count(*) FROM domain_events_delivery WHERE status IN ('pending', 'failed')"
                )
                raise BenchError(f"{open_count} deliveries still open after {timeout:.0f}s; see {self.log_dir}")
            time.sleep(interval)

    # --- processes ----------------------------------------------------------------------

    def child_env(self, **overrides: str) -> dict[str, str]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "BENCH_DATABASE_URL": self.config.database_url,
            "BENCH_BROKER_URL": self.config.broker_url,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        }
        env.update(overrides)
        return env

    def worker(self, name: str, module: str, *args: object, **env: str) -> Worker:
        argv = [PYTHON, "-m", module, *(str(a) for a in args)]
        return Worker(name, argv, self.child_env(**env), self.log_dir)

    def service(self, name: str, argv: list[str], **env: str) -> Service:
        # The application name lets the bench find the service's database backends (their CPU).
        return Service(name, argv, self.child_env(PGAPPNAME=f"bench-{name}", **env), self.log_dir)

    def backend_cpus(self, services: list[Service]) -> dict[int, float]:
        """CPU seconds of each live database backend of `services`, by pid."""
        names = [f"bench-{s.name}" for s in services]
        pids = [
            r[0]
            for r in self.db.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = ANY(%s)", (names,)
            ).fetchall()
        ]
        return {pid: cpu_of(pid) for pid in pids}

    def pause(self, *services: Service, timeout: float = 30) -> None:
        """Stop each service's processes (SIGSTOP) at a moment when none of its database sessions
        is inside a transaction, so that a paused service holds no lock; it then costs no CPU, as if
        it were not running, and `resume` goes on where it was, warm."""
        for service in services:
            name = f"bench-{service.name}"
            deadline = time.monotonic() + timeout
            while True:
                service.signal(signal.SIGSTOP)
                # Twice, a moment apart: a statement already sent when the process stopped has started by then.
                busy = self._busy(name) or (time.sleep(0.02) is None and self._busy(name))
                if not busy:
                    break
                service.signal(signal.SIGCONT)
                if time.monotonic() > deadline:
                    raise BenchError(f"{service.name} never stood outside a transaction in {timeout:.0f} s")
                time.sleep(0.01)

    def _busy(self, application_name: str) -> bool:
        return bool(
            self.scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state <> 'idle'",
                (application_name,),
            )
        )

    def resume(self, *services: Service) -> None:
        for service in services:
            service.signal(signal.SIGCONT)

    def setup_django(self) -> None:
        """Make this process a Django process on the bench database (for benchmarks run in-process)."""
        import django

        for key, value in self.child_env().items():
            if key.startswith(("DJANGO_", "BENCH_")):
                os.environ[key] = value
        django.setup()

    def manage(self, *args: str, **env: str) -> None:
        import subprocess

        done = subprocess.run(
            [PYTHON, "manage.py", *args], cwd=ROOT, env=self.child_env(**env), capture_output=True, text=True
        )
        if done.returncode != 0:
            raise BenchError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")

    def relay(self, name: str, *, wait: bool = True, **env: str) -> Service:
        """A `run_outbox_relay`; with `wait` false, call `wait_for("running")` before using it
        (processes that start side by side start sooner on several cores)."""
        # Verbosity 2 prints one line per batch handed on: the batch sizes a relay achieves.
        argv = [PYTHON, "manage.py", "run_outbox_relay", "--batch-size", str(self.config.batch), "--verbosity", "2"]
        relay = self.service(name, argv, **env)
        if wait:
            relay.wait_for("running")
        return relay


class RunMeter:
    """The CPU the run costs the machine, for each section's time line: this process, everything it
    started (`procs.run_cpu`) and the PostgreSQL backends serving its database, sampled from /proc
    every 0.3 s by a thread (a backend's last fraction of a second before it exits is missed)."""

    def __init__(self, database_url: str) -> None:
        self.needle = f" {conninfo.conninfo_to_dict(database_url).get('dbname')} ".encode()
        self.backends: dict[tuple[int, str], float] = {}
        # The last sample of each backend by pid, for `ServicesCpu`.
        self.by_pid: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        others: set[int] = set()
        while not self._stop.wait(0.3):
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit() or int(entry.name) in others:
                    continue
                try:
                    title = (entry / "cmdline").read_bytes()
                    if not title.startswith(b"postgres: ") or self.needle not in title:
                        # A backend shows its database once it has authenticated: ask again until then.
                        if not title.startswith(b"/usr/lib/postgresql"):
                            others.add(int(entry.name))
                        continue
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                # (pid, start time): a pid the kernel reuses is another backend.
                cpu = (int(fields[11]) + int(fields[12])) / TICKS
                self.backends[(int(entry.name), fields[19])] = self.by_pid[int(entry.name)] = cpu

    def total(self) -> dict[str, float]:
        return {"processes": run_cpu(), "postgresql": sum(self.backends.values())}

    def close(self) -> None:
        self._stop.set()


class ServicesCpu:
    """CPU spent by long-running services (and their database backends) between start() and stop(),
    in total and per service (`by_service`: name -> seconds of its processes, seconds of its backends)."""

    def __init__(self, bench: Bench, services: list[Service]) -> None:
        self.bench = bench
        self.services = services
        self.started: dict[str, tuple[float, dict[int, float]]] = {}
        self.by_service: dict[str, tuple[float, float]] = {}

    def _read(self) -> dict[str, tuple[float, dict[int, float]]]:
        return {s.name: (s.cpu(), self.bench.backend_cpus([s])) for s in self.services}

    def start(self) -> None:
        self.started = self._read()

    def _backends_spent(self, before: dict[int, float], after: dict[int, float]) -> float:
        """Backend CPU between the two readings, backend by backend. A backend that ended between
        them (a connection past CONN_MAX_AGE, replaced) counts up to its last sample by the run's
        meter; a backend that came and went between them is missed."""
        spent = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
        sampled = self.bench.meter.by_pid if self.bench.meter else {}
        for pid in before.keys() - after.keys():
            spent += max(0.0, sampled.get(pid, before[pid]) - before[pid])
        return spent

    def stop(self) -> dict[str, float]:
        now = self._read()
        self.by_service = {
            name: (now[name][0] - self.started[name][0], self._backends_spent(self.started[name][1], now[name][1]))
            for name in now
        }
        return {
            "cpu_client": sum(c for c, _ in self.by_service.values()),
            "cpu_server": sum(s for _, s in self.by_service.values()),
        }


def cpu_per_unit(parts: list[dict], units: int) -> dict[str, float]:
    """Milliseconds of client (Python) and server (PostgreSQL backend) CPU per event or request."""
    client = sum(p.get("cpu_client", 0.0) for p in parts)
    server = sum(p.get("cpu_server", 0.0) for p in parts)
    return {"client_ms": client / units * 1000, "server_ms": server / units * 1000}


def cpu_total(cpu: dict[str, float]) -> float:
    """Client and server milliseconds of a `cpu_per_unit` figure, together."""
    return cpu["client_ms"] + cpu["server_ms"]


# --- figures and tables ---------------------------------------------------------------------


def span(reports: list[dict]) -> float:
    return max(r["end"] for r in reports) - min(r["start"] for r in reports)


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def fmt_rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def fmt_cpu(cpu: dict[str, float] | None) -> str:
    """A `cpu_per_unit` figure as `client+server` milliseconds."""
    return "—" if not cpu else f"{cpu['client_ms']:.2f}+{cpu['server_ms']:.2f}"


def fmt_ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:.1f}"


def table(headers: list[str], rows: list[list[str]], notes: list[str] | None = None) -> str:
    """A Markdown table, aligned so that it also reads well on a terminal."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]

    def line(cells: list[str]) -> str:
        out = []
        for i, (cell, width) in enumerate(zip(cells, widths, strict=False)):
            out.append(str(cell).ljust(width) if i == 0 else str(cell).rjust(width))
        return "| " + " | ".join(out) + " |"

    text = [
        line(headers),
        "|" + "|".join(("-" * (w + 1) + ":") if i else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|",
    ]
    text += [line(r) for r in rows]
    for note in notes or []:
        text.append(f"  {note}")
    return "\n".join(text)
