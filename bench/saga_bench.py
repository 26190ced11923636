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
Within a round, every side's closed loop runs before the paced phases. Whichever ShelfWise side
runs, its relay leads the position readers, as the one relay of a deployment does (`lead_readers`).
ShelfWise runs as served: no process runs an in-process handler after its own commit
(OUTBOX_RUN_ON_COMMIT off, the default); the relay runs them all. With BENCH_SAGA_IN_PROCESS, each
round also runs ShelfWise with in-process running on in the Celery worker and the relay
(OUTBOX_RUN_ON_COMMIT=true there; gunicorn as served), the setting's one use: a worker that captured
a payment confirms the order at once. It takes turns running before and after the default.

With BENCH_SAGA_TRACING, each round also runs ShelfWise with tracing on (every process exporting
its spans over OTLP/HTTP to a loopback sink), a closed loop only, right before or right after the
loop with tracing off (they take turns going first). The cost of tracing is the median of the
rounds' ratios, each traced loop against the untraced loop next to it.
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import redis

from bench.harness import ServicesCpu, cpu_per_unit, cpu_total, fmt_cpu, fmt_ms, fmt_ratio, percentile, table
from bench.orders_bench import WARMUP_WARM
from bench.procs import PYTHON, BenchError, Service, start_line
from domain_events.lock_keys import READERS_LOCK
from testsupport.processes import celery_worker_argv

if TYPE_CHECKING:
    from bench.orders_bench import OrdersBenchmark

# The plain saga's webhooks per confirmed order: placed, reserved, captured, confirmed.
PLAIN_WEBHOOKS_PER_ORDER = 4
LATENCY_CLIENTS = 2
IN_PROCESS = "in-process running on"
DEFAULT = "handlers in the relays only (default)"


def in_process_ratios(shelf: dict, in_process: dict) -> dict[str, float]:
    """In-process running against the default (ShelfWise's side, handlers in the relays only), each
    ratio higher-is-better for in-process running: below 1, the default wins on that figure."""
    return {
        "cpu": cpu_total(shelf["cpu"]) / cpu_total(in_process["cpu"]),
        "per_s": in_process["per_s"] / shelf["per_s"],
        "p50": shelf["latency"]["p50"] / in_process["latency"]["p50"],
        "p99": shelf["latency"]["p99"] / in_process["latency"]["p99"],
    }


def tracing_ratios(rounds: list[dict]) -> list[float]:
    """Each round's CPU per confirmed order with tracing on over the same round's with it off (the
    two loops run back to back)."""
    return [cpu_total(r["traced"]["cpu"]) / cpu_total(r["shelfwise"]["cpu"]) for r in rounds if "traced" in r]


def tracing_cost(rounds: list[dict]) -> float:
    """The cost of tracing: the median of the rounds' ratios (lower is better; the goal is 1.10)."""
    return statistics.median(tracing_ratios(rounds))


def in_process_rows(results: dict) -> list[dict]:
    """The summary lines of the side with in-process running on, against the default (see
    `in_process_ratios`); none when it did not run."""
    shelf, variant = results["median"]["shelfwise"], results["median"].get("in_process")
    if variant is None:
        return []
    ratio = in_process_ratios(shelf, variant)
    rate = results["median"]["plain"]["latency"]["rate"]
    lines = [
        (
            "CPU per confirmed order",
            "cpu",
            f"{cpu_total(variant['cpu']):.1f} ms",
            f"{cpu_total(shelf['cpu']):.1f} ms",
        ),
        (
            "confirmed orders/s, closed loop",
            "per_s",
            f"{variant['per_s']:.1f} orders/s",
            f"{shelf['per_s']:.1f} orders/s",
        ),
    ]
    for q in ("p50", "p99"):
        lines.append(
            (
                f"place→confirmed {q} at {rate:.1f} orders/s",
                q,
                f"{fmt_ms(variant['latency'][q])} ms",
                f"{fmt_ms(shelf['latency'][q])} ms",
            )
        )
    return [
        {
            "what": f"the whole saga, {IN_PROCESS}: {what}",
            "figure": figure,
            "ceiling": f"{DEFAULT} {reference}",
            "ratio": fmt_ratio(ratio[key]),
            "cpu_ratio": fmt_ratio(ratio[key]) if key == "cpu" else "—",
        }
        for what, key, figure, reference in lines
    ]


def plain_unacked(broker: redis.Redis) -> int:
    """The plain saga's messages taken by its worker and not yet acknowledged. Only its own queue's:
    a ShelfWise worker paused between phases may hold messages of its own (stale ones, whose rows
    another batch took), which it acknowledges once it runs again."""
    return sum(1 for raw in broker.hvals("unacked") if json.loads(raw)[2] == "plainsaga")


def received(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/")
        return int(conn.getresponse().read())
    finally:
        conn.close()


@dataclass
class Side:
    """One side of the comparison and its processes, each under the label its figures carry.
    `background`: what is paused while the other side runs (relays and workers poll and wake up even
    when idle; a paused process costs nothing, as one that is not running)."""

    kind: str
    processes: dict[str, Service]
    web_port: int
    receiver_port: int
    background: list[Service] = field(default_factory=list)
    uses: int = 0

    @property
    def services(self) -> list[Service]:
        return list(self.processes.values())


class SagaComparison:
    def __init__(self, orders: OrdersBenchmark) -> None:
        self.orders = orders
        self.bench = orders.bench
        self.config = orders.config
        self.results: dict = {}
        self.sides: dict[str, Side] = {}
        self.endpoint: dict | None = None
        self.staff = {"Authorization": f"Token {orders.spec['staff_token']}", "Content-Type": "application/json"}
        self._own: list[Service] = []

    # --- the processes of each side ---------------------------------------------------------------

    def receiver(self, name: str) -> tuple[Service, int]:
        from bench.orders_bench import free_port

        port = free_port()
        receiver = self.bench.service(name, [PYTHON, "-m", "bench.receiver", str(port)])
        self._own.append(receiver)
        return receiver, port

    def side(self, kind: str) -> Side:
        """The plain saga's processes (the plain gunicorn of `orders`, its own Celery worker) or
        ShelfWise's (the shelfwise stack of `orders`), started once for every round."""
        from bench.orders_bench import http_json

        if kind in self.sides:
            return self.sides[kind]
        receiver, port = self.receiver(f"receiver-{kind}")
        receiver.wait_for("ready")
        if kind == "plain":
            argv = [*celery_worker_argv("bench-plainsaga", python=PYTHON), "-Q", "plainsaga"]
            worker = self.bench.service(
                "celery-plainsaga", argv, LOG_LEVEL="INFO", BENCH_PLAIN_WEBHOOK_URL=f"http://127.0.0.1:{port}/plain"
            )
            self._own.append(worker)
            web = self.orders.stack("plain")
            worker.wait_for(" ready.", timeout=60)
            side = Side(kind, {"gunicorn-plainsaga": web.web, "celery-plainsaga": worker}, web.port, port, [worker])
        else:
            stack = self.orders.stack("shelfwise")
            processes = {"gunicorn-saga": stack.web, "relay-saga": stack.relay, "celery-saga": stack.worker}
            side = Side(kind, processes, stack.port, port, [stack.relay, stack.worker])
            # One webhook endpoint for every event, on the loopback receiver.
            self.endpoint = http_json(
                stack.port, "POST", "/api/v1/webhook-endpoints/", {"url": f"http://127.0.0.1:{port}/orders"}, self.staff
            )
        self.sides[kind] = side
        return side

    def variant_side(self, suffix: str, background: dict[str, str] | None = None, **env: str) -> Side:
        """ShelfWise's side again with processes of its own, each started with `env`, the relay and
        the worker with `background` too; the same receiver and endpoint as ShelfWise's side, the
        same labels for its figures."""
        background = {**env, **(background or {})}
        relay = self.bench.relay(f"relay-saga-{suffix}", wait=False, **background)
        worker = self.bench.service(
            f"celery-saga-{suffix}",
            celery_worker_argv(f"bench-saga-{suffix}", python=PYTHON),
            LOG_LEVEL="INFO",
            **background,
        )
        web, web_port = self.orders.gunicorn(f"gunicorn-saga-{suffix}", **env)
        relay.wait_for("running")
        worker.wait_for(" ready.", timeout=60)
        processes = {"gunicorn-saga": web, "relay-saga": relay, "celery-saga": worker}
        return Side("shelfwise", processes, web_port, self.side("shelfwise").receiver_port, [relay, worker])

    def traced_side(self) -> Side:
        """ShelfWise with tracing on (`core.tracing`): every process exports its spans over OTLP/HTTP
        to a loopback sink that answers 204, as to a collector. Started once for every round; `close`
        stops it."""
        if "traced" not in self.sides:
            sink, port = self.receiver("otlp-sink")
            sink.wait_for("ready")
            side = self.variant_side("traced", OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}")
            self.sides["traced"] = side
            self._own.extend(side.services)
        return self.sides["traced"]

    def in_process_side(self) -> Side:
        """ShelfWise with in-process running on in the relay and the worker: each runs the in-process
        handlers of what it publishes right after its own commit (OUTBOX_RUN_ON_COMMIT=true there;
        gunicorn as served). Started once for every round; `close` stops it."""
        if "in-process" not in self.sides:
            side = self.variant_side("in-process", background={"OUTBOX_RUN_ON_COMMIT": "true"})
            self.sides["in-process"] = side
            self._own.extend(side.services)
        return self.sides["in-process"]

    def sweep(self) -> None:
        """The webhooks sweep, as deployed, for every ShelfWise side (not metered: a query every
        WEBHOOK_SWEEP_INTERVAL). It sends the rare delivery left without a message when its
        subject's earlier delivery was in flight as it was recorded; without it, a phase would wait
        for that delivery until the timeout."""
        sweep = self.bench.service("webhook-sweep", [PYTHON, "manage.py", "send_due_webhooks", "--verbosity", "2"])
        self._own.append(sweep)
        sweep.wait_for("running")

    def close(self) -> None:
        """Deactivate the endpoint and stop the processes of this section (the shared ones are `orders`')."""
        from bench.orders_bench import http_json

        try:
            if self.endpoint is not None:
                self.bench.resume(*self.sides["shelfwise"].background)
                http_json(
                    self.sides["shelfwise"].web_port,
                    "PATCH",
                    f"/api/v1/webhook-endpoints/{self.endpoint['id']}/",
                    {"is_active": False},
                    self.staff,
                )
        finally:
            for service in self._own:
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
            if not placed and not broker.llen("plainsaga") and not plain_unacked(broker):
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

    def only(self, side: Side) -> None:
        """Pause every other side's background processes, and wake this side's; a ShelfWise side's
        relay then leads the position readers (`lead_readers`)."""
        others = [s for other in self.sides.values() if other is not side for s in other.background]
        self.bench.pause(*others)
        self.bench.resume(*side.background)
        if "relay-saga" in side.processes:
            self.lead_readers(side.processes["relay-saga"])

    def lead_readers(self, relay: Service, timeout: float = 30) -> None:
        """Until `relay` holds the readers' lock, as the one relay of a deployment does.

        Of several relays, the one holding that lock moves the position readers at their pace, the
        others once a poll interval, in larger and cheaper batches. The first relay to start would
        keep it while paused, and every other side's relay would do the readers' work the cheap way:
        the holder's connection is ended instead (the paused relay finds it closed when it runs
        again, as after a network failure, and goes on)."""
        high, low = divmod(READERS_LOCK, 1 << 32)
        mine = f"bench-{relay.name}"
        deadline = time.monotonic() + timeout
        while True:
            holders = self.bench.db.execute(
                "SELECT a.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objid = %s AND l.objsubid = 1 AND l.granted",
                (high, low),
            ).fetchall()
            if any(name == mine for _, name in holders):
                return
            for pid, _ in holders:
                self.bench.db.execute("SELECT pg_terminate_backend(%s)", (pid,))
            if time.monotonic() > deadline:
                raise BenchError(f"{relay.name} did not take the readers' lock in {timeout:.0f} s")
            time.sleep(0.05)

    def loop(self, side: Side, tag: str) -> dict:
        """One side's closed-loop figures, every other side's background processes paused."""
        kind, services = side.kind, side.services
        self.only(side)
        for service in services:
            service.reset_peak_rss()
        side.uses += 1
        # The first round's clients warm fresh processes up; later rounds find them warm.
        warmup = self.config.warmup if side.uses == 1 else min(WARMUP_WARM, self.config.warmup)
        warm_since = self.bench.scalar("SELECT now()")
        clients = self.clients(
            kind, tag, side.web_port, self.config.saga_orders, "--warmup", warmup, n=self.config.http_clients
        )
        for client in clients:
            client.wait_ready(timeout=120)
        # The clients' warm-up orders are done with before the meter starts.
        self.settle(kind, warm_since, 900)
        since = self.bench.scalar("SELECT now()")
        webhooks_before = received(side.receiver_port)
        meter = ServicesCpu(self.bench, services)
        meter.start()
        started = start_line(clients)
        for client in clients:
            client.result(timeout=600)
        self.settle(kind, since, self.config.saga_orders)
        cpu = meter.stop()
        rss = {name: s.peak_rss() for name, s in side.processes.items()}
        orders, last_confirmed, statuses = self.outcome(since)
        webhooks = received(side.receiver_port) - webhooks_before
        labels = {s.name: name for name, s in side.processes.items()}
        figures = {
            "orders": orders,
            "statuses": statuses,
            "cpu": cpu_per_unit([cpu], orders),
            "by_process": {
                labels[name]: {"client_ms": c / orders * 1000, "server_ms": b / orders * 1000}
                for name, (c, b) in meter.by_service.items()
            },
            "per_s": statuses.get("confirmed", 0) / (last_confirmed - started),
            "webhooks_per_order": webhooks / orders,
            "peak_rss_mib": rss,
        }
        return figures

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

    def latency(self, side: Side, tag: str, rate: float) -> dict:
        """One side's latency from placing to confirmation at `rate` orders/s, every other side's
        background processes paused."""
        self.only(side)
        kind, count = side.kind, self.config.saga_latency_orders
        per_client = rate / LATENCY_CLIENTS
        clients = self.clients(
            kind, f"{tag}-paced", side.web_port, count, "--rate", per_client, "--warmup", 0, n=LATENCY_CLIENTS
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
        try:
            # Every side up before the first phase, so that each phase can pause the others'.
            plain_side, shelf_side = self.side("plain"), self.side("shelfwise")
            self.sweep()
            variants = []
            if self.config.saga_in_process:
                variants.append(("in_process", self.in_process_side(), "-in-process"))
            traced_side = self.traced_side() if self.config.saga_tracing else None
            for i in range(self.config.saga_rounds):
                plain = self.loop(plain_side, str(i))
                plain["latency"] = self.latency(plain_side, str(i), plain["per_s"] / 2)
                this_round = {"plain": plain}
                # Tracing on and off run back to back, taking turns going first, so that the drift
                # of a shared machine between phases weighs on their ratio as little as it can;
                # the other variants take turns before and after them.
                pair = [("shelfwise", shelf_side, "")]
                if traced_side is not None:
                    pair.append(("traced", traced_side, "-traced"))
                pair = pair if i % 2 == 0 else pair[::-1]
                order = pair + variants if i % 2 == 0 else variants + pair
                for key, side, suffix in order:
                    this_round[key] = self.loop(side, f"{i}{suffix}")
                for key, side, suffix in order:
                    if key != "traced":
                        this_round[key]["latency"] = self.latency(side, f"{i}{suffix}", plain["latency"]["rate"])
                rounds.append(this_round)
                shelf = this_round["shelfwise"]
                say(
                    f"  whole saga, round {i + 1}: CPU per confirmed order {cpu_total(shelf['cpu']):.1f} ms"
                    f" (plain saga {cpu_total(plain['cpu']):.1f}); {shelf['per_s']:.1f} confirmed orders/s"
                    f" (plain saga {plain['per_s']:.1f})"
                )
                if "in_process" in this_round:
                    variant = this_round["in_process"]
                    lat, lat_shelf = variant["latency"], shelf["latency"]
                    say(
                        f"    {IN_PROCESS}: {cpu_total(variant['cpu']):.1f} ms, {variant['per_s']:.1f} confirmed"
                        f" orders/s, p50/p99 {fmt_ms(lat['p50'])}/{fmt_ms(lat['p99'])} ms (default"
                        f" {fmt_ms(lat_shelf['p50'])}/{fmt_ms(lat_shelf['p99'])})"
                    )
                if "traced" in this_round:
                    traced = cpu_total(this_round["traced"]["cpu"])
                    say(f"    tracing on: {traced:.1f} ms ({traced / cpu_total(shelf['cpu']):.2f}x tracing off)")
            self.results = {"rounds": rounds, "median": {k: self.median([r[k] for r in rounds]) for k in rounds[0]}}
            if "traced" in self.results["median"]:
                say(
                    f"  tracing on: {cpu_total(self.results['median']['traced']['cpu']):.1f} ms per confirmed order,"
                    f" {tracing_cost(rounds):.2f}x tracing off (median of the rounds)"
                )
        finally:
            self.close()
        return self.results

    @staticmethod
    def median(phases: list[dict]) -> dict:
        """The median round of a side, by CPU per order; throughput and latencies as medians of their own."""
        by_cpu = sorted(phases, key=lambda p: cpu_total(p["cpu"]))
        out = dict(by_cpu[len(by_cpu) // 2])
        out["per_s"] = statistics.median(p["per_s"] for p in phases)
        if "latency" in out:
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
        variant = self.results["median"].get("in_process")
        rows = []
        sides = [("plain saga (bench/plainsaga)", plain), ("ShelfWise", shelf)]
        if variant is not None:
            sides.append((f"ShelfWise, {IN_PROCESS}", variant))
        for label, f in sides:
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
                *self.in_process_note(),
                *self.traced_note(),
            ],
        )

    def in_process_note(self) -> list[str]:
        variant = self.results["median"].get("in_process")
        if variant is None:
            return []
        by_round = [in_process_ratios(r["shelfwise"], r["in_process"]) for r in self.results["rounds"]]

        def each(key: str) -> str:
            return "/".join(f"{r[key]:.2f}" for r in by_round)

        return [
            f"ShelfWise, {IN_PROCESS}: the same processes, the Celery worker and the relay started with"
            " OUTBOX_RUN_ON_COMMIT=true (gunicorn as served), so each runs the in-process handlers of what"
            " it publishes after its own commit; ShelfWise's line is the default, where the relay runs them"
            " all. By process: "
            + ", ".join(f"{n} {fmt_cpu(c)}" for n, c in variant["by_process"].items())
            + ". Round by round, in-process running against the default (higher: in-process running does"
            f" better; below 1: the default wins): CPU {each('cpu')}, confirmed/s {each('per_s')},"
            f" p50 {each('p50')}, p99 {each('p99')}."
        ]

    def traced_note(self) -> list[str]:
        traced = self.results["median"].get("traced")
        if traced is None:
            return []
        by_round = "/".join(f"{r:.2f}" for r in tracing_ratios(self.results["rounds"]))
        return [
            "Tracing on (OTLP/HTTP export of every span to a loopback sink), a closed loop in every round:"
            f" {cpu_total(traced['cpu']):.1f} ms per confirmed order (median round); against the loop with"
            f" tracing off next to it, round by round {by_round}, median {tracing_cost(self.results['rounds']):.2f}x"
            " (goal: 1.10x at most)."
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
        rows.extend(in_process_rows(self.results))
        if "traced" in self.results["median"]:
            traced = cpu_total(self.results["median"]["traced"]["cpu"])
            cost = tracing_cost(self.results["rounds"])
            rows.append(
                {
                    "what": "the whole saga with tracing on (OTLP export), CPU per confirmed order"
                    " (ratio: median of the rounds, each against the loop with tracing off next to it)",
                    "figure": f"{traced:.1f} ms",
                    "ceiling": f"tracing off {cpu_total(shelf['cpu']):.1f} ms",
                    "ratio": fmt_ratio(1 / cost),
                    "cpu_ratio": fmt_ratio(1 / cost),
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
