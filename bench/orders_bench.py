"""Benchmark 2: orders placed per second over HTTP, beside the raw-SQL order transaction.

Measured in one run, each for BENCH_SECONDS:

* the raw-SQL ceiling: the order transaction (1 order + 3 items + the `order.placed` event + one
  delivery per subscribed handler) hand-written with psycopg 3 in 4 processes;
* the plain-DRF reference: the same inserts through gunicorn, Django and DRF, without
  authentication, catalog lookup, events or handlers (bench/plain.py);
* ShelfWise: `POST /api/v1/orders/` through gunicorn (sync workers, persistent connections) with
  every handler subscribed and an outbox relay running, as served (OUTBOX_RUN_ON_COMMIT off, the
  default): after each commit the web worker queues the Celery handlers' messages and wakes the
  relay, which runs the in-process handlers.
* then the Celery worker, paused during the load, resumes, and the time until every placed order is
  confirmed gives the downstream rate (reserve, register, capture, confirm) as a comparison line.

Each gunicorn, the relay and the worker start once and serve every phase that can share them
(`Stack`), and the saga section after this one; a process that must not run during a phase is
paused (SIGSTOP, outside any transaction), which costs no CPU.

The whole saga against the plain saga is the `saga` section (bench/saga_bench.py).
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time
from dataclasses import dataclass

from bench.harness import (
    Bench,
    ServicesCpu,
    cpu_per_unit,
    cpu_total,
    fmt_cpu,
    fmt_ms,
    fmt_rate,
    fmt_ratio,
    percentile,
    span,
    table,
)
from bench.procs import PYTHON, ROOT, BenchError, Service, start_line
from testsupport.processes import celery_worker_argv

MAX_REQUESTS_PER_CLIENT = 50_000
# Orders each load client places before it is measured on processes that have served a phase
# already (BENCH_WARMUP on processes that serve their first).
WARMUP_WARM = 3
PRODUCTS = 100
STOCK = 1_000_000


def orders_available() -> bool:
    return (ROOT / "orders" / "api.py").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(port: int, method: str, path: str, body: dict, headers: dict[str, str]) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, json.dumps(body), headers)
        response = conn.getresponse()
        payload = response.read()
    finally:
        conn.close()
    if response.status >= 300:
        raise BenchError(f"{method} {path} gave {response.status}: {payload[:300]!r}")
    return json.loads(payload or b"{}")


def latency_figure(figures: dict) -> str:
    return f"{fmt_rate(figures['per_s'])} req/s, p50 {fmt_ms(figures['p50'])} ms, p99 {fmt_ms(figures['p99'])} ms"


@dataclass
class Stack:
    """Processes started once and shared by the phases that can share them, in this section and in
    `saga`: a gunicorn (and a relay and a Celery worker) for each way the web is configured.

    * `plain`: plain DRF's and the plain saga's endpoints (bench/urls.py);
    * `publish-only`: `POST orders/` with the web recording events only (the request alone, and
      the handlers left to the relay);
    * `shelfwise`: `POST orders/` as served, its relay and its Celery worker.
    """

    web: Service
    port: int
    relay: Service | None = None
    worker: Service | None = None
    uses: int = 0

    @property
    def services(self) -> list[Service]:
        return [s for s in (self.web, self.relay, self.worker) if s is not None]


class OrdersBenchmark:
    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.config = bench.config
        self.spec: dict = {}
        self.results: dict[str, object] = {}
        self.stacks: dict[str, Stack] = {}

    # --- seed ----------------------------------------------------------------------------

    def setup(self) -> None:
        done = subprocess.run(
            [PYTHON, "-m", "bench.orders_setup", "--products", str(PRODUCTS), "--stock", str(STOCK)],
            cwd=ROOT,
            env=self.bench.child_env(),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise BenchError(f"seeding the order benchmark failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        self.spec = json.loads(done.stdout.strip().splitlines()[-1])

    def load_spec(self) -> str:
        keys = (
            "tenant_id",
            "currency",
            "customer_id",
            "customer_token",
            "plain_customer_id",
            "raw_customer_id",
            "products",
            "order_placed_handlers",
        )
        return json.dumps({k: self.spec[k] for k in keys})

    # --- phases --------------------------------------------------------------------------

    def ceiling(self) -> dict:
        procs = self.config.ceiling_procs
        workers = [
            self.bench.worker(
                f"ceiling-order-{i}",
                "bench.ceiling",
                "order",
                "--seconds",
                self.config.seconds,
                "--max-count",
                MAX_REQUESTS_PER_CLIENT,
                "--spec",
                self.load_spec(),
                "--seed",
                i,
            )
            for i in range(procs)
        ]
        start_line(workers)
        reports = [w.result(timeout=self.config.seconds + 120) for w in workers]
        self._forget_raw_orders()
        return self._figures(reports, reports)

    def _forget_raw_orders(self) -> None:
        """The ceiling's orders must not reach the handlers of the phases that follow."""
        customer = self.spec["raw_customer_id"]
        db = self.bench.db
        with db.transaction():
            db.execute(
                "CREATE TEMP TABLE raw_events ON COMMIT DROP AS SELECT e.id FROM domain_events_storedevent e"
                " JOIN orders_order o ON o.id = e.aggregate_id WHERE o.customer_id = %s",
                (customer,),
            )
            db.execute("DELETE FROM domain_events_delivery WHERE stored_event_id IN (SELECT id FROM raw_events)")
            db.execute("DELETE FROM domain_events_storedevent WHERE id IN (SELECT id FROM raw_events)")
            db.execute(
                "DELETE FROM orders_orderitem WHERE order_id IN (SELECT id FROM orders_order WHERE customer_id = %s)",
                (customer,),
            )
            db.execute("DELETE FROM orders_order WHERE customer_id = %s", (customer,))

    def gunicorn(self, name: str, *, wait: bool = True, **env: str) -> tuple[Service, int]:
        """gunicorn on a free port; with `wait` false, call `wait_up` before using it."""
        port = free_port()
        argv = [
            PYTHON,
            "-m",
            "gunicorn",
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(self.config.gunicorn_workers),
            "--worker-class",
            "sync",
            "--log-level",
            "warning",
        ]
        server = self.bench.service(name, argv, **env)
        if wait:
            self.wait_up(server, port)
        return server, port

    @staticmethod
    def wait_up(server: Service, port: int) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            except OSError:
                pass
            if server.popen.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"gunicorn did not come up:\n{server.output()[-2000:]}")
            time.sleep(0.1)

    def stack(self, kind: str) -> Stack:
        """The processes of `kind`, started on first use and shared by the phases of this section
        and of `saga` (see `Stack`); `close` stops them."""
        if kind in self.stacks:
            return self.stacks[kind]
        if kind == "plain":
            web, port = self.gunicorn("gunicorn-plain", wait=False)
            stack = Stack(web, port)
        elif kind == "publish-only":
            # The web workers record the events and hand nothing on (OUTBOX_DISPATCH_ON_COMMIT=false).
            web, port = self.gunicorn("gunicorn-publish-only", wait=False, OUTBOX_DISPATCH_ON_COMMIT="false")
            stack = Stack(web, port)
        else:
            # As served: the web hands on, the relay runs the in-process handlers (OUTBOX_RUN_ON_COMMIT off).
            relay = self.bench.relay("relay-shelfwise", wait=False)
            worker = self.bench.service(
                "celery-shelfwise", celery_worker_argv("bench-shelfwise", python=PYTHON), LOG_LEVEL="INFO"
            )
            web, port = self.gunicorn("gunicorn-shelfwise", wait=False)
            relay.wait_for("running")
            worker.wait_for(" ready.", timeout=60)
            stack = Stack(web, port, relay, worker)
        self.wait_up(stack.web, stack.port)
        self.stacks[kind] = stack
        return stack

    def close(self, *kinds: str) -> None:
        """Stop the shared processes (of `kinds`, or all)."""
        for kind in kinds or list(self.stacks):
            stack = self.stacks.pop(kind, None)
            for service in stack.services if stack else []:
                service.stop()

    def warmup(self, stack: Stack) -> int:
        """Orders each client places before the measure: BENCH_WARMUP to warm fresh processes up,
        fewer once the stack has served a phase."""
        stack.uses += 1
        return self.config.warmup if stack.uses == 1 else min(WARMUP_WARM, self.config.warmup)

    def http_load(self, port: int, services: list[Service], *, plain: bool, warmup: int) -> dict:
        extra = ["--plain"] if plain else []
        clients = [
            self.bench.worker(
                f"load-{'plain' if plain else 'orders'}-{i}",
                "bench.load",
                "--port",
                port,
                "--seconds",
                self.config.seconds,
                "--max-requests",
                # ShelfWise's phases stop at BENCH_PHASE_ORDERS orders: every one is then followed
                # to its end, and that drain, not the requests, is what takes the time.
                MAX_REQUESTS_PER_CLIENT if plain else max(1, self.config.phase_orders // self.config.http_clients),
                "--spec",
                self.load_spec(),
                "--seed",
                i,
                "--warmup",
                warmup,
                *extra,
            )
            for i in range(self.config.http_clients)
        ]
        for client in clients:
            client.wait_ready(timeout=120)
        meter = ServicesCpu(self.bench, services)
        meter.start()
        start_line(clients)
        reports = [c.result(timeout=self.config.seconds + 120) for c in clients]
        cpu = meter.stop()
        statuses: dict[str, int] = {}
        for r in reports:
            for code, n in r["statuses"].items():
                statuses[code] = statuses.get(code, 0) + n
        figures = self._figures(reports, [cpu])
        figures["statuses"] = statuses
        bad = sum(n for code, n in statuses.items() if code != "201")
        if bad:
            raise BenchError(f"{bad} requests did not get 201: {statuses}; see {self.bench.log_dir}")
        return figures

    def _figures(self, reports: list[dict], cpu_parts: list[dict]) -> dict:
        latencies = [x for r in reports for x in r["latencies"]]
        count = len(latencies)
        return {
            "count": count,
            "per_s": count / span(reports),
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
            "cpu": cpu_per_unit(cpu_parts, count),
        }

    def plain(self) -> dict:
        stack = self.stack("plain")
        return self.http_load(stack.port, [stack.web], plain=True, warmup=self.warmup(stack))

    def shelfwise(self, tag: str) -> dict:
        """Load `POST orders/`, then drain what follows with the Celery worker (and the relay).

        `served`: production settings: after each commit the web workers send the Celery messages
        and wake the relay, which runs the in-process handlers. `relayed`: the web workers only
        record events and the relay hands everything on, in batches, during the load. `deferred`:
        the request alone, with no consumer running during the load; the relay resumes with the
        worker once the load is over.

        The relay and the worker are the shelfwise stack's: what must not run during the load is
        paused (`Bench.pause`: stopped outside any transaction, no CPU) and resumed for the drain.
        """
        shelf = self.stack("shelfwise")
        web = shelf if tag == "served" else self.stack("publish-only")
        paused = [shelf.worker] if tag != "deferred" else [shelf.relay, shelf.worker]
        metered = [web.web] if tag == "deferred" else [web.web, shelf.relay]
        self.bench.pause(*paused)
        since = self.bench.scalar("SELECT now()")
        try:
            placed = self.http_load(web.port, metered, plain=False, warmup=self.warmup(web))
        finally:
            self.bench.resume(*paused)
        placed["downstream"] = self.drain(placed["count"], since)
        return placed

    def drain(self, placed: int, since: object) -> dict:
        """With the worker (and the relay) just resumed, wait until every order of the run is confirmed."""
        started = time.time()
        self.wait_settled(since, placed, deliveries=False)
        done = time.time()
        # What follows the confirmations (e-mails, projections, audit) settles too, so that the
        # next phase's processes do not work off this one's backlog.
        self.wait_settled(since, max(900, placed), deliveries=True)
        by_status = self.statuses(since)
        total = sum(by_status.values())
        return {"orders": total, "seconds": done - started, "per_s": total / (done - started), "statuses": by_status}

    def statuses(self, since: object) -> dict[str, int]:
        rows = self.bench.db.execute(
            "SELECT status, count(*) FROM orders_order WHERE customer_id = %s AND created_at >= %s GROUP BY status",
            (self.spec["customer_id"], since),
        ).fetchall()
        return dict(rows)

    def wait_settled(self, since: object, placed: int, *, deliveries: bool) -> None:
        """Until no order of the run is still `placed` (and, with `deliveries`, no handler or
        webhook delivery is open and the projections and the audit chain have read every event)."""
        deadline = time.monotonic() + max(300, placed)
        while True:
            waiting = self.bench.scalar(
                "SELECT count(*) FROM orders_order WHERE customer_id = %s AND status = 'placed' AND created_at >= %s",
                (self.spec["customer_id"], since),
            )
            if not waiting and not (
                deliveries
                and self.bench.scalar(
                    "SELECT (SELECT count(*) FROM domain_events_delivery WHERE status IN ('pending', 'failed'))"
                    " + (SELECT count(*) FROM webhooks_webhookdelivery WHERE status IN ('pending', 'failed'))"
                    # The position readers (projections, the audit chain) at the head as well.
                    " + (SELECT count(*) FROM domain_events_storedevent WHERE position IS NULL)"
                    " + (SELECT count(*) FROM domain_events_checkpoint WHERE (name LIKE 'analytics.%%'"
                    "    OR name LIKE 'audit.%%') AND position < (SELECT coalesce(max(position), 0)"
                    "    FROM domain_events_storedevent))"
                )
            ):
                return
            if time.monotonic() > deadline:
                raise BenchError(f"orders still placed or deliveries open after the timeout; see {self.bench.log_dir}")
            time.sleep(0.05)

    # --- the run ---------------------------------------------------------------------------------

    def run(self) -> dict:
        say = self.bench.say
        say(f"Benchmark 2: POST orders over HTTP, {self.config.seconds:.0f} s per phase")
        if not self.spec:
            self.setup()
        q = self.spec["queries"]
        say(
            f"  seeded tenant {self.spec['tenant_slug']}: {PRODUCTS} products via POST products/;"
            f" queries per POST orders/: {q['post_order_served']} with handlers,"
            f" {q['post_order_request_only']} request only"
        )
        self.results["ceiling"] = self.ceiling()
        say(f"  raw-SQL order transaction: {self.results['ceiling']['per_s']:,.0f} tx/s")
        self.results["plain"] = self.plain()
        say(f"  plain DRF: {self.results['plain']['per_s']:,.0f} req/s")
        phases = {
            "shelfwise_deferred": ("deferred", "the request alone, no consumer running"),
            "shelfwise": ("served", "as served: the web worker hands on, the relay runs the handlers"),
            "shelfwise_relayed": ("relayed", "handlers in the relay"),
        }
        for key, (tag, label) in phases.items():
            if key == "shelfwise_relayed" and not self.config.orders_relayed:
                continue
            placed = self.results[key] = self.shelfwise(tag)
            down = placed["downstream"]
            say(
                f"  ShelfWise POST orders/ ({label}): {placed['per_s']:,.0f} req/s;"
                f" {down['orders']} orders confirmed {down['seconds']:.1f} s later"
            )
        # Only this section's phases use the web that publishes only.
        self.close("publish-only")
        self.results["spec"] = {k: v for k, v in self.spec.items() if k not in ("customer_token", "staff_token")}
        return self.results

    def report(self) -> str:
        r = self.results
        ceiling, plain = r["ceiling"], r["plain"]
        w = self.config.gunicorn_workers
        handlers = ", ".join(self.spec["order_placed_handlers"])

        def shelf_row(label: str, shelf: dict) -> list[str]:
            return [
                label,
                f"{fmt_rate(shelf['per_s'])} req/s",
                fmt_ms(shelf["p50"]),
                fmt_ms(shelf["p99"]),
                fmt_ratio(shelf["per_s"] / ceiling["per_s"]),
                fmt_ratio(shelf["per_s"] / plain["per_s"]),
                fmt_cpu(shelf["cpu"]),
                fmt_ratio(cpu_total(ceiling["cpu"]) / cpu_total(shelf["cpu"])),
                fmt_ratio(cpu_total(plain["cpu"]) / cpu_total(shelf["cpu"])),
            ]

        rows = [
            [
                "raw-SQL order transaction (psycopg 3, 4 processes)",
                f"{fmt_rate(ceiling['per_s'])} tx/s",
                fmt_ms(ceiling["p50"]),
                fmt_ms(ceiling["p99"]),
                "1.00",
                "—",
                fmt_cpu(ceiling["cpu"]),
                "1.00",
                "—",
            ],
            [
                f"plain Django + DRF, same inserts, no auth, no events (gunicorn {w} sync)",
                f"{fmt_rate(plain['per_s'])} req/s",
                fmt_ms(plain["p50"]),
                fmt_ms(plain["p99"]),
                fmt_ratio(plain["per_s"] / ceiling["per_s"]),
                "1.00",
                fmt_cpu(plain["cpu"]),
                fmt_ratio(cpu_total(ceiling["cpu"]) / cpu_total(plain["cpu"])),
                "1.00",
            ],
            shelf_row(
                "ShelfWise POST /api/v1/orders/, the request alone: no consumer runs during the load",
                r["shelfwise_deferred"],
            ),
            shelf_row(
                f"ShelfWise POST /api/v1/orders/, every handler subscribed (gunicorn {w} sync + relay)", r["shelfwise"]
            ),
        ]
        if "shelfwise_relayed" in r:
            rows.append(
                shelf_row(
                    "  the same, web publishes only: OUTBOX_DISPATCH_ON_COMMIT=false for gunicorn",
                    r["shelfwise_relayed"],
                )
            )
        downs = [(k, r[k]["downstream"]) for k in ("shelfwise_deferred", "shelfwise", "shelfwise_relayed") if k in r]
        q = self.spec["queries"]
        return self.orders_table(rows, downs, q, handlers)

    def orders_table(self, rows: list, downs: list, q: dict, handlers: str) -> str:
        return table(
            [
                "orders",
                "throughput",
                "p50 ms",
                "p99 ms",
                "vs raw SQL",
                "vs plain DRF",
                "CPU ms/req py+pg",
                "CPU vs raw",
                "CPU vs plain",
            ],
            rows,
            notes=[
                f"{self.config.http_clients} closed-loop HTTP clients on loopback,"
                f" 3 random lines of {PRODUCTS} products each,"
                f" {self.config.seconds:.0f} s per phase; every response checked to be 201.",
                f"order.placed is handled by: {handlers};"
                " each subscriber is a delivery row in the raw-SQL transaction too.",
                f"Queries per POST orders/ (CaptureQueriesContext): {q['post_order_served']} as served"
                " (after the commit, the Celery messages sent and the relays woken);"
                f" {q['post_order_request_only']} for the request alone (dispatch on commit off).",
                "After each ShelfWise phase the Celery worker (prefork 2), paused during the load, resumes (and,"
                " after the request-alone phase, the relay) and every order must end confirmed: "
                + "; ".join(f"{d['orders']} orders {d['statuses']} {d['seconds']:.1f} s later" for _, d in downs)
                + ".",
                "CPU ms/req: gunicorn + relay processes and their PostgreSQL backends during the load"
                " (raw SQL: the client processes and their backends); CPU vs x = x's CPU per order / this line's.",
            ],
        )

    def summary_rows(self) -> list[dict]:
        r = self.results
        ceiling, plain, shelf = r["ceiling"], r["plain"], r["shelfwise"]
        deferred = r["shelfwise_deferred"]
        rows = [
            {
                "what": "POST orders/, the request alone (no consumer running)",
                "figure": latency_figure(deferred),
                "ceiling": f"plain DRF {fmt_rate(plain['per_s'])} req/s",
                "ratio": fmt_ratio(deferred["per_s"] / plain["per_s"]),
                "cpu_ratio": fmt_ratio(cpu_total(plain["cpu"]) / cpu_total(deferred["cpu"])),
            },
            {
                "what": "POST orders/ over HTTP, every handler subscribed",
                "figure": latency_figure(shelf),
                "ceiling": f"raw SQL {fmt_rate(ceiling['per_s'])} tx/s",
                "ratio": fmt_ratio(shelf["per_s"] / ceiling["per_s"]),
                "cpu_ratio": fmt_ratio(cpu_total(ceiling["cpu"]) / cpu_total(shelf["cpu"])),
            },
            {
                "what": "POST orders/ vs plain DRF with the same inserts",
                "figure": f"{fmt_rate(shelf['per_s'])} req/s",
                "ceiling": f"plain DRF {fmt_rate(plain['per_s'])} req/s",
                "ratio": fmt_ratio(shelf["per_s"] / plain["per_s"]),
                "cpu_ratio": fmt_ratio(cpu_total(plain["cpu"]) / cpu_total(shelf["cpu"])),
            },
        ]
        if "shelfwise_relayed" in r:
            relayed = r["shelfwise_relayed"]
            rows.append(
                {
                    "what": "POST orders/, web publishes only (handlers in the relay)",
                    "figure": latency_figure(relayed),
                    "ceiling": f"plain DRF {fmt_rate(plain['per_s'])} req/s",
                    "ratio": fmt_ratio(relayed["per_s"] / plain["per_s"]),
                    "cpu_ratio": fmt_ratio(cpu_total(plain["cpu"]) / cpu_total(relayed["cpu"])),
                }
            )
        return rows
