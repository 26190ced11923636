"""The whole saga, ShelfWise against the plain saga (bench/plainsaga): what the event platform's
guarantees cost over hand-written Django + Celery.

Each phase starts its processes (ShelfWise: gunicorn, a relay and a Celery worker with one webhook
endpoint for every event; the plain saga: gunicorn and a Celery worker sending one webhook per
state change), both to a loopback receiver, and measures with the same processes:

* closed loop: BENCH_HTTP_CLIENTS clients place BENCH_SAGA_ORDERS orders as fast as they are
  answered; every process and its PostgreSQL backends are metered from the first order until the
  last side effect is done. Figures: CPU per confirmed order, and confirmed orders per second (the
  orders over the time from the first request to the last confirmation);
* paced: BENCH_SAGA_LATENCY_ORDERS orders at half the plain saga's confirmed rate of the same round;
  the latency of each order is from its placing (created_at) to its confirmation (updated_at);
* the peak resident memory of every process of the phase.

Rounds alternate (plain saga, then ShelfWise) BENCH_SAGA_ROUNDS times; the figures are the medians.
"""

from __future__ import annotations

import http.client
import statistics
import time
from typing import TYPE_CHECKING

import redis

from bench.harness import ServicesCpu, cpu_per_unit, cpu_total, fmt_cpu, fmt_ms, fmt_ratio, percentile, table
from bench.procs import PYTHON, BenchError, Service, start_line
from testsupport.processes import celery_worker_argv

if TYPE_CHECKING:
    from bench.orders_bench import OrdersBenchmark

# The plain saga's webhooks per confirmed order: placed, reserved, captured, confirmed.
PLAIN_WEBHOOKS_PER_ORDER = 4
LATENCY_CLIENTS = 2


def received(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/")
        return int(conn.getresponse().read())
    finally:
        conn.close()


class SagaComparison:
    def __init__(self, orders: OrdersBenchmark) -> None:
        self.orders = orders
        self.bench = orders.bench
        self.config = orders.config
        self.results: dict = {}

    # --- the processes of a phase -----------------------------------------------------------------

    def start(self, kind: str, tag: str, **env: str) -> dict:
        from bench.orders_bench import free_port, http_json

        port = free_port()
        receiver = self.bench.service(f"receiver-{kind}-{tag}", [PYTHON, "-m", "bench.receiver", str(port)])
        receiver.wait_for("ready")
        phase: dict = {"receiver": receiver, "receiver_port": port, "endpoint": None}
        if kind == "plain":
            argv = [*celery_worker_argv(f"bench-plainsaga-{tag}", python=PYTHON), "-Q", "plainsaga"]
            worker = self.bench.service(
                f"celery-plainsaga-{tag}",
                argv,
                LOG_LEVEL="INFO",
                BENCH_PLAIN_WEBHOOK_URL=f"http://127.0.0.1:{port}/plain",
            )
            server, web_port = self.orders.gunicorn(f"gunicorn-plainsaga-{tag}")
            phase["services"] = [server, worker]
        else:
            relay = self.bench.relay(f"relay-saga-{tag}", **env)
            worker = self.bench.service(
                f"celery-saga-{tag}", celery_worker_argv(f"bench-saga-{tag}", python=PYTHON), LOG_LEVEL="INFO", **env
            )
            # As served (config/gunicorn.conf.py): the web hands on, the relay runs the in-process handlers.
            server, web_port = self.orders.gunicorn(f"gunicorn-saga-{tag}", OUTBOX_RUN_ON_COMMIT="false", **env)
            staff = {"Authorization": f"Token {self.orders.spec['staff_token']}", "Content-Type": "application/json"}
            phase["endpoint"] = http_json(
                web_port, "POST", "/api/v1/webhook-endpoints/", {"url": f"http://127.0.0.1:{port}/orders"}, staff
            )
            phase["staff"] = staff
            phase["services"] = [server, relay, worker]
        worker.wait_for(" ready.", timeout=60)
        phase["web_port"] = web_port
        return phase

    def stop(self, phase: dict) -> None:
        from bench.orders_bench import http_json

        try:
            if phase["endpoint"] is not None:
                http_json(
                    phase["web_port"],
                    "PATCH",
                    f"/api/v1/webhook-endpoints/{phase['endpoint']['id']}/",
                    {"is_active": False},
                    phase["staff"],
                )
        finally:
            for service in [*phase["services"], phase["receiver"]]:
                service.stop()

    def settle(self, kind: str, since: object, count: int) -> None:
        """Until every order since `since` is out of `placed` and every side effect is done."""
        if kind != "plain":
            self.orders.wait_settled(since, count, deliveries=True)
            return
        broker = redis.Redis.from_url(self.config.broker_url)
        deadline = time.monotonic() + max(300, count)
        while True:
            placed = self.bench.scalar(
                "SELECT count(*) FROM orders_order WHERE customer_id = %s AND status = 'placed' AND created_at >= %s",
                (self.orders.spec["customer_id"], since),
            )
            if not placed and not broker.llen("plainsaga") and not broker.hlen("unacked"):
                return
            if time.monotonic() > deadline:
                raise BenchError(f"plain saga: orders or tasks still open after the timeout; see {self.bench.log_dir}")
            time.sleep(0.05)

    def clients(self, kind: str, tag: str, port: int, count: int, *extra: object, n: int) -> list:
        flag = ["--saga"] if kind == "plain" else []
        return [
            self.bench.worker(
                f"load-{kind}saga-{tag}-{i}",
                "bench.load",
                "--port",
                port,
                "--seconds",
                600,
                "--max-requests",
                max(1, count // n),
                "--spec",
                self.orders.load_spec(),
                "--seed",
                200 + i,
                *flag,
                *extra,
            )
            for i in range(n)
        ]

    # --- one phase ----------------------------------------------------------------------------------

    def phase(self, kind: str, tag: str, latency_rate: float | None, *, latency: bool = True, **env: str) -> dict:
        """One side's closed-loop figures, then (with `latency`) its paced latency. `env`: more
        environment for ShelfWise's processes (tracing on)."""
        phase = self.start(kind, tag, **env)
        services: list[Service] = phase["services"]
        try:
            warm_since = self.bench.scalar("SELECT now()")
            clients = self.clients(kind, tag, phase["web_port"], self.config.saga_orders, n=self.config.http_clients)
            for client in clients:
                client.wait_ready(timeout=120)
            # The clients' warm-up orders are done with before the meter starts.
            self.settle(kind, warm_since, 900)
            since = self.bench.scalar("SELECT now()")
            webhooks_before = received(phase["receiver_port"])
            meter = ServicesCpu(self.bench, services)
            meter.start()
            started = start_line(clients)
            for client in clients:
                client.result(timeout=600)
            self.settle(kind, since, self.config.saga_orders)
            cpu = meter.stop()
            rss = {s.name.rsplit("-", 1)[0]: s.peak_rss() for s in services}
            orders, last_confirmed, statuses = self.outcome(since)
            webhooks = received(phase["receiver_port"]) - webhooks_before
            figures = {
                "orders": orders,
                "statuses": statuses,
                "cpu": cpu_per_unit([cpu], orders),
                "by_process": {
                    name.rsplit("-", 1)[0]: {"client_ms": c / orders * 1000, "server_ms": b / orders * 1000}
                    for name, (c, b) in meter.by_service.items()
                },
                "per_s": statuses.get("confirmed", 0) / (last_confirmed - started),
                "webhooks_per_order": webhooks / orders,
                "peak_rss_mib": rss,
            }
            if latency:
                rate = latency_rate if latency_rate is not None else figures["per_s"] / 2
                figures["latency"] = self.latency(kind, tag, phase, rate)
            return figures
        finally:
            self.stop(phase)

    def outcome(self, since: object) -> tuple[int, float, dict[str, int]]:
        rows = self.bench.db.execute(
            "SELECT status, count(*), extract(epoch FROM max(updated_at)) FROM orders_order"
            " WHERE customer_id = %s AND created_at >= %s GROUP BY status",
            (self.orders.spec["customer_id"], since),
        ).fetchall()
        statuses = {status: n for status, n, _ in rows}
        if statuses.get("placed"):
            raise BenchError(f"saga phase: orders left placed {statuses}")
        last = max((float(at) for status, _, at in rows if status == "confirmed"), default=0.0)
        return sum(statuses.values()), last, statuses

    def latency(self, kind: str, tag: str, phase: dict, rate: float) -> dict:
        count = self.config.saga_latency_orders
        per_client = rate / LATENCY_CLIENTS
        clients = self.clients(
            kind, f"{tag}-paced", phase["web_port"], count, "--rate", per_client, "--warmup", 0, n=LATENCY_CLIENTS
        )
        for client in clients:
            client.wait_ready(timeout=120)
        since = self.bench.scalar("SELECT now()")
        start_line(clients)
        for client in clients:
            client.result(timeout=600)
        self.settle(kind, since, count)
        latencies = [
            float(x)
            for (x,) in self.bench.db.execute(
                "SELECT extract(epoch FROM updated_at - created_at) FROM orders_order"
                " WHERE customer_id = %s AND created_at >= %s AND status = 'confirmed'",
                (self.orders.spec["customer_id"], since),
            ).fetchall()
        ]
        return {
            "rate": rate,
            "orders": len(latencies),
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
        }

    # --- the run ----------------------------------------------------------------------------------

    def run(self) -> dict:
        say = self.bench.say
        rounds = []
        for i in range(self.config.saga_rounds):
            plain = self.phase("plain", str(i), None)
            shelf = self.phase("shelfwise", str(i), plain["latency"]["rate"])
            rounds.append({"plain": plain, "shelfwise": shelf})
            say(
                f"  whole saga, round {i + 1}: CPU per confirmed order {cpu_total(shelf['cpu']):.1f} ms"
                f" (plain saga {cpu_total(plain['cpu']):.1f}); {shelf['per_s']:.1f} confirmed orders/s"
                f" (plain saga {plain['per_s']:.1f})"
            )
        self.results = {"rounds": rounds, "median": {k: self.median([r[k] for r in rounds]) for k in rounds[0]}}
        if self.config.saga_tracing:
            traced = self.results["traced"] = self.traced()
            off = self.results["median"]["shelfwise"]
            say(
                f"  the same with tracing on: {cpu_total(traced['cpu']):.1f} ms"
                f" ({cpu_total(traced['cpu']) / cpu_total(off['cpu']):.2f}x the median with tracing off)"
            )
        return self.results

    def traced(self) -> dict:
        """ShelfWise's closed loop again with tracing on (`core.tracing`): every process exports its
        spans over OTLP/HTTP to a loopback sink that answers 204, as to a collector."""
        from bench.orders_bench import free_port

        port = free_port()
        sink = self.bench.service("otlp-sink", [PYTHON, "-m", "bench.receiver", str(port)])
        sink.wait_for("ready")
        try:
            return self.phase(
                "shelfwise", "traced", None, latency=False, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}"
            )
        finally:
            sink.stop()

    @staticmethod
    def median(phases: list[dict]) -> dict:
        """The median round of a side, by CPU per order; throughput and latencies as medians of their own."""
        by_cpu = sorted(phases, key=lambda p: cpu_total(p["cpu"]))
        out = dict(by_cpu[len(by_cpu) // 2])
        out["per_s"] = statistics.median(p["per_s"] for p in phases)
        out["latency"] = {
            **out["latency"],
            "p50": statistics.median(p["latency"]["p50"] for p in phases),
            "p99": statistics.median(p["latency"]["p99"] for p in phases),
        }
        out["peak_rss_mib"] = {
            name: [max(p["peak_rss_mib"][name][i] for p in phases) for i in range(len(rss))]
            for name, rss in phases[0]["peak_rss_mib"].items()
        }
        return out

    def report(self) -> str:
        plain, shelf = self.results["median"]["plain"], self.results["median"]["shelfwise"]
        rows = []
        for label, f in (("plain saga (bench/plainsaga)", plain), ("ShelfWise", shelf)):
            rows.append(
                [
                    label,
                    fmt_cpu(f["cpu"]),
                    f"{cpu_total(f['cpu']):.1f}",
                    f"{f['per_s']:.1f}",
                    fmt_ms(f["latency"]["p50"]),
                    fmt_ms(f["latency"]["p99"]),
                    f"{f['webhooks_per_order']:.1f}",
                    "; ".join(f"{n} {'/'.join(f'{m:.0f}' for m in mib)}" for n, mib in f["peak_rss_mib"].items()),
                ]
            )
        return table(
            [
                "whole saga",
                "CPU ms/order py+pg",
                "total",
                "confirmed/s",
                "p50 ms",
                "p99 ms",
                "webhooks/order",
                "peak RSS MiB per process",
            ],
            rows,
            notes=[
                f"{self.config.saga_rounds} alternating round(s), medians; closed loop:"
                f" {self.config.saga_orders} orders from {self.config.http_clients} clients; latency from placing to"
                f" confirmation at {plain['latency']['rate']:.1f} orders/s (half the plain saga's rate),"
                f" {self.config.saga_latency_orders} orders.",
                f"ShelfWise {shelf['statuses']}; plain saga {plain['statuses']}. Every process and its PostgreSQL"
                " backends, from the first request until every side effect is done; process start-up not counted.",
                "By process (ms py+pg per order): ShelfWise "
                + ", ".join(f"{n} {fmt_cpu(c)}" for n, c in shelf["by_process"].items())
                + "; plain saga "
                + ", ".join(f"{n} {fmt_cpu(c)}" for n, c in plain["by_process"].items())
                + ".",
                *self.traced_note(),
            ],
        )

    def traced_note(self) -> list[str]:
        if "traced" not in self.results:
            return []
        traced, off = self.results["traced"], self.results["median"]["shelfwise"]
        return [
            f"Tracing on (OTLP/HTTP export of every span to a loopback sink), one closed loop after the rounds:"
            f" {cpu_total(traced['cpu']):.1f} ms per confirmed order,"
            f" {cpu_total(traced['cpu']) / cpu_total(off['cpu']):.2f}x"
            " the median with tracing off (goal: 1.10x at most)."
        ]

    def summary_rows(self) -> list[dict]:
        plain, shelf = self.results["median"]["plain"], self.results["median"]["shelfwise"]
        lat_p, lat_s = plain["latency"], shelf["latency"]
        rows = [
            {
                "what": "the whole saga: CPU per confirmed order, every process",
                "figure": f"{cpu_total(shelf['cpu']):.1f} ms",
                "ceiling": f"plain saga {cpu_total(plain['cpu']):.1f} ms",
                "ratio": fmt_ratio(cpu_total(plain["cpu"]) / cpu_total(shelf["cpu"])),
                "cpu_ratio": fmt_ratio(cpu_total(plain["cpu"]) / cpu_total(shelf["cpu"])),
            },
            {
                "what": "the whole saga: confirmed orders/s, closed loop",
                "figure": f"{shelf['per_s']:.1f} orders/s",
                "ceiling": f"plain saga {plain['per_s']:.1f} orders/s",
                "ratio": fmt_ratio(shelf["per_s"] / plain["per_s"]),
                "cpu_ratio": "—",
            },
            {
                "what": f"the whole saga: place→confirmed p50 at {lat_p['rate']:.1f} orders/s",
                "figure": f"{fmt_ms(lat_s['p50'])} ms",
                "ceiling": f"plain saga {fmt_ms(lat_p['p50'])} ms",
                "ratio": fmt_ratio(lat_p["p50"] / lat_s["p50"]),
                "cpu_ratio": "—",
            },
            {
                "what": f"the whole saga: place→confirmed p99 at {lat_p['rate']:.1f} orders/s",
                "figure": f"{fmt_ms(lat_s['p99'])} ms",
                "ceiling": f"plain saga {fmt_ms(lat_p['p99'])} ms",
                "ratio": fmt_ratio(lat_p["p99"] / lat_s["p99"]),
                "cpu_ratio": "—",
            },
        ]
        if "traced" in self.results:
            traced = cpu_total(self.results["traced"]["cpu"])
            rows.append(
                {
                    "what": "the whole saga with tracing on (OTLP export), CPU per confirmed order",
                    "figure": f"{traced:.1f} ms",
                    "ceiling": f"tracing off {cpu_total(shelf['cpu']):.1f} ms",
                    "ratio": fmt_ratio(cpu_total(shelf["cpu"]) / traced),
                    "cpu_ratio": fmt_ratio(cpu_total(shelf["cpu"]) / traced),
                }
            )
        plain_peak = max(m for mib in plain["peak_rss_mib"].values() for m in mib)
        for name, mib in shelf["peak_rss_mib"].items():
            rows.append(
                {
                    "what": f"the whole saga: peak RSS, {name} (largest process of {len(mib)})",
                    "figure": f"{max(mib):.0f} MiB",
                    "ceiling": f"plain saga largest process {plain_peak:.0f} MiB",
                    "ratio": fmt_ratio(plain_peak / max(mib)),
                    "cpu_ratio": "—",
                }
            )
        return rows
