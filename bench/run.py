"""`make bench`: ShelfWise's throughput against raw-SQL ceilings measured in the same run.

Needs only PostgreSQL and Redis. Drops and creates its own database on every run, a copy of
<name>_template, migrated when a migration changed (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/sw_bench; only a database named sw_* is accepted), empties and
uses Redis db 5 (BENCH_BROKER_URL), stops every process it started, and writes the figures to
bench/results/latest.json; each section prints its time and its CPU.

Absolute figures move ±30 % between runs on a small machine; compare the ratios, which are taken
against ceilings measured in the same run.

Sizes (environment variable or option):
  BENCH_EVENTS / --events                events per fan-out run (default 2000)
  BENCH_CELERY_EVENTS / --celery-events  events for the Celery comparison (default 400; 0 skips it)
  BENCH_RELAYS / --relays                relay counts to measure, comma-separated (default 1,2,4)
  BENCH_SECONDS / --seconds              duration of each HTTP and order-ceiling phase (default 10)
  BENCH_ONLY / --only                    publish,fanout,orders,saga,admin,readside,webhooks,history (default all)
  BENCH_PUBLISHERS (2), BENCH_FAST_PUBLISHERS (4; 0 skips the fast path), BENCH_FAST_PATH_RELAY (1),
  BENCH_CEILING_PROCS (4), BENCH_BATCH (100), BENCH_HTTP_CLIENTS (6), BENCH_GUNICORN_WORKERS (3),
  BENCH_ORDERS_RELAYED (1: also measure POST orders/ with the handlers left to the relay),
  BENCH_PHASE_ORDERS (400: the most orders a ShelfWise phase places within BENCH_SECONDS),
  BENCH_SAGA_ORDERS (200: the closed-loop orders of a whole-saga phase), BENCH_SAGA_LATENCY_ORDERS (100:
  the paced orders of its latency figure), BENCH_SAGA_ROUNDS (3: alternating rounds, ShelfWise and the
  plain saga of bench/plainsaga; medians)
  BENCH_SAGA_TRACING (1: each saga round also runs a closed loop with tracing on, exporting to a
    loopback OTLP sink; the cost is the median of the rounds' ratios; 0 skips it)
  BENCH_SAGA_IN_PROCESS (1, 0 under QUICK: each saga round also runs ShelfWise with the worker and the
  relay at OUTBOX_RUN_ON_COMMIT=true, each running the in-process handlers after its own commit)
  BENCH_WARMUP (10: orders each HTTP load client places before it is measured, on fresh processes; 3 on
  processes that have served a phase)
  BENCH_READSIDE_EVENTS (100000,200000), BENCH_READSIDE_BATCH (500), BENCH_READSIDE_ORDERS (300),
  BENCH_READSIDE_RATE (20), BENCH_READSIDE_LAG_ROUNDS (3)
                                         the read side (Benchmark 4)
  BENCH_HISTORY_SIZES (100000,1000000), BENCH_HISTORY_MONTHS (12), BENCH_HISTORY_PUBLISH_EVENTS (3000),
  BENCH_HISTORY_PUBLISH_ROUNDS (2), BENCH_HISTORY_RELAY_EVENTS (2000), BENCH_HISTORY_RELAYS (2),
  BENCH_HISTORY_LAG_ORDERS (200), BENCH_HISTORY_ADMIN_RUNS (3), BENCH_HISTORY_CHUNK (100000),
  BENCH_HISTORY_FILL_CONNECTIONS (2)
                                         flat cost as the history grows (bench/history_bench.py)
  BENCH_EXPERIMENTS                      proposed backbone changes to try (bench/experiments.py)
  QUICK=1 / --quick                      every line at a small size and in fewer rounds (a few minutes;
                                         `make bench QUICK=1`): the sizes below, unless set in the
                                         environment
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import experiments
from bench.harness import BENCHMARKS, RESULTS_DIR, Bench, Config, RunMeter, fmt_rate, fmt_ratio, table
from bench.procs import ROOT, BenchError, stop_all

# `--quick`: every line at a small size, to see that the whole run works and roughly where it
# stands; figures from the full sizes only go in docs/performance.md.
QUICK_SIZES = {
    "BENCH_PUBLISH_EVENTS": "600",
    "BENCH_PUBLISH_ROUNDS": "1",
    "BENCH_EVENTS": "250",
    "BENCH_CELERY_EVENTS": "40",
    "BENCH_SECONDS": "2",
    "BENCH_PHASE_ORDERS": "90",
    "BENCH_WARMUP": "3",
    "BENCH_SAGA_ORDERS": "30",
    "BENCH_SAGA_LATENCY_ORDERS": "20",
    "BENCH_SAGA_ROUNDS": "1",
    # The saga's side with in-process running on (BENCH_SAGA_IN_PROCESS=1 runs it).
    "BENCH_SAGA_IN_PROCESS": "0",
    "BENCH_ADMIN_EVENTS": "10000",
    "BENCH_ADMIN_RUNS": "1",
    "BENCH_READSIDE_EVENTS": "3000,6000",
    "BENCH_READSIDE_ORDERS": "30",
    "BENCH_READSIDE_LAG_ROUNDS": "1",
    "BENCH_WEBHOOK_EVENTS": "20",
    "BENCH_HISTORY_SIZES": "10000,30000",
    "BENCH_HISTORY_PUBLISH_EVENTS": "600",
    "BENCH_HISTORY_PUBLISH_ROUNDS": "1",
    "BENCH_HISTORY_RELAY_EVENTS": "250",
    "BENCH_HISTORY_LAG_ORDERS": "30",
    "BENCH_HISTORY_ADMIN_RUNS": "1",
}


def quick_notice(config: Config) -> str:
    """What QUICK leaves out, said at the top of its output."""
    rounds = [
        f"saga {config.saga_rounds} round(s) where the full run takes the median of 3 alternating rounds",
        f"publish {os.environ.get('BENCH_PUBLISH_ROUNDS', '3')} round(s) of 3",
        f"the admin's pages {os.environ.get('BENCH_ADMIN_RUNS', '5')} fetch(es) of 5",
    ]
    if not config.saga_in_process:
        rounds.append("the saga without its side with in-process running on")
    return (
        "  QUICK: every line at a small size, in fewer rounds (" + "; ".join(rounds) + "):\n"
        "  to see that everything works and roughly where it stands, not figures to quote."
    )


def parse_args() -> Config:
    quick = "--quick" in sys.argv[1:] or os.environ.get("QUICK", "") not in ("", "0", "false", "no")
    if quick:
        for name, value in QUICK_SIZES.items():
            os.environ.setdefault(name, value)
    config = Config.from_env()
    config.quick = quick
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=config.events)
    parser.add_argument("--celery-events", type=int, default=config.celery_events)
    parser.add_argument("--relays", default=",".join(map(str, config.relays)))
    parser.add_argument("--seconds", type=float, default=config.seconds)
    parser.add_argument("--only", default=",".join(config.only))
    parser.add_argument("--quick", action="store_true", help="every line at a small size (QUICK_SIZES)")
    args = parser.parse_args()
    config.events = args.events
    config.celery_events = args.celery_events
    config.relays = [int(x) for x in args.relays.split(",") if x.strip()]
    config.seconds = args.seconds
    config.only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = set(config.only) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    return config


def machine_facts(bench: Bench) -> dict[str, object]:
    import django
    import psycopg
    import redis

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kb = int(
            next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")).split()[1]
        )
        memory = f"{mem_kb / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration):
        memory = "unknown"
    pg = {
        name: bench.scalar(f"SHOW {name}")
        for name in ("server_version", "shared_buffers", "synchronous_commit", "max_connections")
    }
    try:
        redis_version = redis.Redis.from_url(bench.config.broker_url, socket_connect_timeout=2).info("server")[
            "redis_version"
        ]
    except redis.RedisError as exc:
        raise BenchError(f"Redis at {bench.config.broker_url} is required: {exc}") from exc
    try:
        git = ["git", "-C", str(ROOT)]
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "domain_events", "config", "orders", "inventory", "payments"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        if commit and dirty:
            commit += " + uncommitted changes"
    except OSError:
        commit = ""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory": memory,
        "load_average_at_start": os.getloadavg(),
        "postgresql": pg["server_version"],
        "postgresql_settings": {k: v for k, v in pg.items() if k != "server_version"},
        "redis": redis_version,
        "python": platform.python_version(),
        "django": django.get_version(),
        "psycopg": psycopg.__version__,
        "experiments": experiments.active(),
    }


def header(facts: dict[str, object]) -> str:
    load = ", ".join(f"{x:.2f}" for x in facts["load_average_at_start"])
    pg = facts["postgresql_settings"]
    return "\n".join(
        [
            "ShelfWise benchmarks",
            f"  machine:    {facts['cores']} cores ({facts['cpu']}), {facts['memory']}, load average {load}",
            f"  PostgreSQL: {facts['postgresql']} (shared_buffers {pg['shared_buffers']},"
            f" synchronous_commit {pg['synchronous_commit']})",
            f"  Redis:      {facts['redis']}",
            f"  Python:     {facts['python']}, Django {facts['django']}, psycopg {facts['psycopg']}",
            f"  commit:     {facts['commit'] or 'unknown'}    date: {facts['date']}",
            *(
                [f"  experiments: {', '.join(facts['experiments'])} (bench/experiments.py)"]
                if facts["experiments"]
                else []
            ),
            "  Absolute figures move ±30 % between runs here;"
            " the ratios to the ceilings of the same run are what count.",
        ]
    )


def summary(rows: list[dict]) -> str:
    return table(
        ["ShelfWise (this run)", "figure", "reference, same run", "ratio", "CPU ratio"],
        [[r["what"], r["figure"], r["ceiling"], r["ratio"], r["cpu_ratio"]] for r in rows],
    )


def section_runner(
    bench: Bench, config: Config, results: dict, reports: list[str], summary_rows: list[dict], meter: RunMeter
):
    """Run one of the sections that share the plain shape: run(), report(), summary_rows()."""
    import importlib

    def run_section(name: str, module: str, cls: str) -> None:
        if name not in config.only:
            return
        started = time.monotonic(), meter.total()
        section = getattr(importlib.import_module(module), cls)(bench)
        results[name] = section.run()
        reports.append(section.report())
        summary_rows.extend(section.summary_rows())
        took(name, started)

    def took(name: str, started: tuple[float, dict[str, float]]) -> None:
        """Print and keep the section's time, and the CPU it cost (its processes, its PostgreSQL
        backends): on a busy machine the time stretches, the CPU hardly moves."""
        seconds = results.setdefault("section_seconds", {})[name] = round(time.monotonic() - started[0])
        now = meter.total()
        cpu = results.setdefault("section_cpu_seconds", {})[name] = {k: round(now[k] - started[1][k]) for k in now}
        load = os.getloadavg()[0]
        bench.say(
            f"  ({name}: {seconds} s; CPU {cpu['processes']} s in its processes,"
            f" {cpu['postgresql']} s in PostgreSQL; load average {load:.1f})"
        )
        bench.say()

    def start() -> tuple[float, dict[str, float]]:
        return time.monotonic(), meter.total()

    run_section.took = took
    run_section.start = start

    return run_section


def main() -> int:
    config = parse_args()
    bench = Bench(config)
    started = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    meter = bench.meter = RunMeter(config.database_url)
    try:
        database_started = time.monotonic(), meter.total()
        bench.recreate_database()
        facts = machine_facts(bench)
        bench.say(header(facts))
        if config.quick:
            bench.say(quick_notice(config))
        bench.say()
        results: dict[str, object] = {"machine": facts, "config": vars(config).copy()}
        summary_rows: list[dict] = []
        reports: list[str] = []
        run_section = section_runner(bench, config, results, reports, summary_rows, meter)
        run_section.took("database", database_started)

        run_section("publish", "bench.publish_bench", "PublishBenchmark")

        if "fanout" in config.only:
            from bench.fanout_bench import FanoutBenchmark

            fanout_started = run_section.start()
            fanout = FanoutBenchmark(bench)
            results["fanout"] = fanout.run()
            rows = fanout.rows()
            results["fanout"]["rows"] = rows
            reports.append(fanout.report())
            for r in rows:
                summary_rows.append(
                    {
                        "what": r["label"],
                        "figure": f"{fmt_rate(r['events_per_s'])} events/s",
                        "ceiling": f"{r['ceiling_label']} {fmt_rate(r['ceiling_per_s'])} events/s",
                        "ratio": fmt_ratio(r["ratio"]),
                        "cpu_ratio": fmt_ratio(r["cpu_ratio"]),
                    }
                )
            summary_rows.extend(fanout.peer_summary())
            run_section.took("fanout", fanout_started)

        if "orders" in config.only or "saga" in config.only:
            from bench.orders_bench import OrdersBenchmark, orders_available
            from bench.saga_bench import SagaComparison

            if not orders_available():
                bench.say("Benchmark 2 (orders over HTTP) skipped: orders/api.py is not in this checkout.")
            else:
                # The two sections share their processes (gunicorns, a relay, a Celery worker).
                orders = OrdersBenchmark(bench)
                try:
                    if "orders" in config.only:
                        orders_started = run_section.start()
                        results["orders"] = orders.run()
                        reports.append(orders.report())
                        summary_rows.extend(orders.summary_rows())
                        run_section.took("orders", orders_started)
                    if "saga" in config.only:
                        saga_started = run_section.start()
                        bench.say("The whole saga: ShelfWise against the plain Django + Celery saga (bench/plainsaga)")
                        if not orders.spec:
                            orders.setup()
                        saga = SagaComparison(orders)
                        results["saga"] = saga.run()
                        reports.append(saga.report())
                        summary_rows.extend(saga.summary_rows())
                        run_section.took("saga", saga_started)
                finally:
                    orders.close()

        run_section("admin", "bench.admin_bench", "AdminBenchmark")

        run_section("readside", "bench.readside_bench", "ReadSideBenchmark")

        run_section("webhooks", "bench.webhooks_bench", "WebhooksBenchmark")

        run_section("history", "bench.history_bench", "HistoryBenchmark")

        for report in reports:
            bench.say(report)
            bench.say()
        bench.say("Summary")
        bench.say(summary(summary_rows))
        results["summary"] = summary_rows
        results["machine"]["load_average_at_end"] = os.getloadavg()
        results["seconds"] = time.monotonic() - started
        results["cpu_seconds"] = meter.total()
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        out = RESULTS_DIR / "latest.json"
        out.write_text(json.dumps(results, indent=2, default=str))
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        cpu = meter.total()
        bench.say(
            f"\n{time.monotonic() - started:.0f} s (CPU {cpu['processes']:.0f} s in the run's processes,"
            f" {cpu['postgresql']:.0f} s in PostgreSQL); load average at the end {load};"
            f" results in {out.relative_to(ROOT)}"
        )
        return 0
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_all()
        meter.close()


if __name__ == "__main__":
    sys.exit(main())
