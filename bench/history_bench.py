"""Benchmark `history`: does the cost of the hot paths stay flat as the stored history grows?

For each size of BENCH_HISTORY_SIZES (default 100,000 and 1,000,000 stored events; the issue's
1,000,000 and 10,000,000 by setting it), the history tables are emptied and filled with that
many events spread over BENCH_HISTORY_MONTHS past months (`bench/history.py`: order lives with
their deliveries, orders, order summaries, audit entries and webhook deliveries), vacuumed and
analysed as autovacuum would have. Then, on top of that history:

* publish with positions: BENCH_PUBLISH_PROCS (8) processes send the platform's recording
  statement (`bench/ceiling.py publish --record platform`, as Benchmark 0's line (b)),
  BENCH_HISTORY_PUBLISH_EVENTS events in each of BENCH_HISTORY_PUBLISH_ROUNDS rounds (median);
  every new event must have a distinct position and a revision;
* the relay path: Benchmark 1's line (2 publishers, BENCH_HISTORY_RELAYS relays, 5 handlers per
  event), BENCH_HISTORY_RELAY_EVENTS events; every counter must read 1;
* the reader lag: Benchmark 4's commit-to-dashboard line, BENCH_HISTORY_LAG_ORDERS orders at
  BENCH_READSIDE_RATE a second;
* the admin's list pages (stored events, deliveries, audit entries, webhook deliveries, orders),
  as an operator and as the biggest tenant's staff through Django's test client: one warm-up,
  the median of BENCH_HISTORY_ADMIN_RUNS; the slowest page counts (budget 300 ms);
* retention of the history's first month: its succeeded deliveries removed by one DELETE on
  the index `domain_events.retention.prune` uses, and, when the deliveries are partitioned and
  the month has a partition of its own, by truncating that partition (the rows that must stay
  moved out first and back after). Both run in a transaction that is rolled back,
  so the history stays whole.

The bench's own rows are deleted after each line. Each figure at a larger size is compared with
the first size's: the ratio is the first size's figure over the larger one's for costs, the
larger's over the first's for rates, so higher is better and 1/1.1 = 0.91 is the goal.
"""

from __future__ import annotations

import dataclasses
import os
import re
import statistics
import time

import psycopg

from bench.admin_bench import AdminBenchmark
from bench.fanout.names import CELERY_FANOUT_TYPE, FANOUT_TYPE, HANDLERS_PER_EVENT
from bench.fanout_bench import FanoutBenchmark, split
from bench.harness import Bench, cpu_per_unit, cpu_total, env_int, env_ints, fmt_cpu, fmt_rate, fmt_ratio, span, table
from bench.history import TABLES, Shape, deliveries_per_order, fill, months_after, prepare_shape
from bench.procs import BenchError, start_line
from bench.readside_bench import ReadSideBenchmark

GOAL = 1 / 1.1
ADMIN_BUDGET_S = 0.300
BENCH_TYPES = [FANOUT_TYPE, CELERY_FANOUT_TYPE]
DELIVERIES = "domain_events_delivery"
# A month's succeeded deliveries in one statement, on `retention.prune`'s index (completed_at, of the
# succeeded). Prune deletes in batches of 5,000, each a transaction; in one rolled-back transaction
# each batch would walk the index entries of the batches before it, so the measure is one DELETE:
# the cheapest form of what partitions replace.
DELETE_MONTH = f"DELETE FROM {DELIVERIES} WHERE status = 'succeeded' AND completed_at >= %s AND completed_at < %s"
# Retention settings of the processes this section starts: a century.
NO_PRUNING = {"OUTBOX_DELIVERY_RETENTION_HOURS": str(100 * 365 * 24), "OUTBOX_DEAD_LETTER_RETENTION_DAYS": "36500"}
BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


def clear_bench_rows(bench: Bench) -> None:
    """Take out what the lines published (bench event types), so the history keeps its size."""
    db = bench.db
    db.execute(f"DELETE FROM {DELIVERIES} WHERE event_type = ANY(%s)", (BENCH_TYPES,))
    db.execute("DELETE FROM domain_events_storedevent WHERE type = ANY(%s)", (BENCH_TYPES,))
    db.execute("DELETE FROM domain_events_stream WHERE aggregate_type = 'subject'")


class HistoryFanout(FanoutBenchmark):
    """Benchmark 1's relay path on top of the history: reset empties only the bench's rows."""

    def reset(self, events: int, handlers: tuple[str, ...]) -> None:
        clear_bench_rows(self.bench)
        self.bench.db.execute("TRUNCATE fanout_counter")
        self.bench.db.execute(
            "INSERT INTO fanout_counter (handler, account, value)"
            " SELECT h, a, 0 FROM unnest(%s::text[]) h, generate_series(0, %s - 1) a",
            (list(handlers), events),
        )
        self.bench.db.execute("VACUUM ANALYZE fanout_counter")


class HistoryReadSide(ReadSideBenchmark):
    """Benchmark 4's lag line on top of the history: nothing of the history is emptied."""

    def reset(self) -> None:
        clear_bench_rows(self.bench)


class HistoryAdmin(AdminBenchmark):
    """Benchmark 3's page timing, over the lists the history fills."""

    def __init__(self, bench: Bench, *, sample: str, runs: int) -> None:
        super().__init__(bench)
        from django.contrib.auth import get_user_model

        User = get_user_model()
        self.superuser = User.objects.get(username="history-root")
        self.staff = User.objects.get(username="history-staff")
        self.sample = sample
        self.runs = runs

    def pages(self, *, superuser: bool) -> list[tuple[str, str, dict]]:
        events, deliveries = "/admin/domain_events/storedevent/", "/admin/domain_events/delivery/"
        audit, webhooks, orders = "/admin/audit/auditentry/", "/admin/webhooks/webhookdelivery/", "/admin/orders/order/"
        return [
            ("events: first page", events, {}),
            ("events: type = order.confirmed", events, {"type__exact": "order.confirmed"}),
            ("events: search by aggregate id", events, {"q": self.sample}),
            ("events: page 50", events, {"p": 50}),
            ("deliveries: first page", deliveries, {}),
            ("deliveries: status = dead", deliveries, {"status__exact": "dead"}),
            ("deliveries: handler = orders.confirm_order", deliveries, {"handler__exact": "orders.confirm_order"}),
            ("deliveries: page 50", deliveries, {"p": 50}),
            ("audit: first page", audit, {}),
            ("audit: event type = order.fulfilled", audit, {"event_type__exact": "order.fulfilled"}),
            ("audit: actor = customer", audit, {"actor": "customer"}),
            ("audit: page 50", audit, {"p": 50}),
            ("webhook deliveries: first page", webhooks, {}),
            ("webhook deliveries: status = dead", webhooks, {"status__exact": "dead"}),
            ("webhook deliveries: event type = order.placed", webhooks, {"event_type__exact": "order.placed"}),
            ("webhook deliveries: page 50", webhooks, {"p": 50}),
            ("orders: first page", orders, {}),
            ("orders: status = confirmed", orders, {"status__exact": "confirmed"}),
            ("orders: page 50", orders, {"p": 50}),
        ]


class HistoryBenchmark:
    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        bench.setup_django()
        self.sizes = env_ints("BENCH_HISTORY_SIZES", "100000,1000000")
        self.months = env_int("BENCH_HISTORY_MONTHS", 12)
        self.chunk = env_int("BENCH_HISTORY_CHUNK", 100_000)
        self.fill_connections = env_int("BENCH_HISTORY_FILL_CONNECTIONS", 2)
        self.publish_procs = env_int("BENCH_PUBLISH_PROCS", 8)
        self.publish_events = env_int("BENCH_HISTORY_PUBLISH_EVENTS", 3000)
        self.publish_rounds = env_int("BENCH_HISTORY_PUBLISH_ROUNDS", 2)
        self.relay_events = env_int("BENCH_HISTORY_RELAY_EVENTS", 2000)
        self.relays = env_int("BENCH_HISTORY_RELAYS", 2)
        self.lag_orders = env_int("BENCH_HISTORY_LAG_ORDERS", 200)
        self.admin_runs = env_int("BENCH_HISTORY_ADMIN_RUNS", 3)
        self.results: dict[str, object] = {}

    # --- the history ---------------------------------------------------------------------------

    def fill(self, events: int) -> tuple[Shape, dict]:
        import redis

        say = self.bench.say
        db = self.bench.db
        started = time.monotonic()
        db.execute(f"TRUNCATE {', '.join(TABLES)}, fanout_counter RESTART IDENTITY CASCADE")
        # What a previous size's lag line left for Celery.
        redis.Redis.from_url(self.bench.config.broker_url).flushdb()
        shape = prepare_shape(months=self.months)
        say(
            f"  filling {events:,} events over {self.months} months from {shape.start:%Y-%m-%d}"
            f" ({deliveries_per_order(shape) * 2 / 9:.2f} deliveries per event)"
        )
        connections = [
            psycopg.connect(self.bench.config.database_url, autocommit=True) for _ in range(self.fill_connections)
        ]
        try:
            seconds = fill([c.execute for c in connections], events=events, shape=shape, chunk=self.chunk, say=say)
        finally:
            for connection in connections:
                connection.close()
        t0 = time.monotonic()
        for name in TABLES:
            db.execute(f"VACUUM ANALYZE {name}")
        vacuum = time.monotonic() - t0
        sizes = {
            name: db.execute(f"SELECT count(*), pg_total_relation_size('{name}') FROM {name}").fetchone()
            for name in TABLES
        }
        filled = {
            "events": events,
            "seconds": time.monotonic() - started,
            "vacuum_seconds": vacuum,
            "statement_seconds": seconds,
            "rows": {name: rows for name, (rows, _) in sizes.items() if rows},
            "bytes": {name: size for name, (rows, size) in sizes.items() if rows},
            "database_bytes": self.bench.scalar("SELECT pg_database_size(current_database())"),
        }
        say(
            f"  filled in {filled['seconds']:.0f} s (VACUUM ANALYZE {vacuum:.0f} s):"
            f" {filled['rows'].get(DELIVERIES, 0):,} deliveries,"
            f" {filled['rows'].get('orders_order', 0):,} orders, {filled['rows'].get('audit_auditentry', 0):,} audit"
            f" entries, {filled['rows'].get('webhooks_webhookdelivery', 0):,} webhook deliveries;"
            f" database {filled['database_bytes'] / 2**30:.2f} GiB"
        )
        return shape, filled

    # --- the lines -------------------------------------------------------------------------------

    def publish_once(self) -> dict:
        clear_bench_rows(self.bench)
        head = self.bench.scalar("SELECT coalesce(max(position), 0) FROM domain_events_storedevent")
        workers = [
            self.bench.worker(
                f"history-publish-{i}",
                "bench.ceiling",
                "publish",
                "--count",
                n,
                "--account-base",
                base,
                "--record",
                "platform",
            )
            for i, (base, n) in enumerate(split(self.publish_events, self.publish_procs))
        ]
        start_line(workers)
        reports = [w.result() for w in workers]
        total, distinct, revised = self.bench.db.execute(
            "SELECT count(*), count(DISTINCT position), count(revision) FROM domain_events_storedevent"
            " WHERE type = %s AND position > %s",
            (FANOUT_TYPE, head),
        ).fetchone()
        if not total == distinct == revised == self.publish_events:
            raise BenchError(
                f"history publish: {total} events past the history, {distinct} distinct positions,"
                f" {revised} with a revision; expected {self.publish_events} of each"
            )
        clear_bench_rows(self.bench)
        return {"per_s": self.publish_events / span(reports), "cpu": cpu_per_unit(reports, self.publish_events)}

    def publish(self) -> dict:
        runs = [self.publish_once() for _ in range(self.publish_rounds)]
        return {
            "runs": runs,
            "per_s": statistics.median(r["per_s"] for r in runs),
            "cpu": {part: statistics.fmean(r["cpu"][part] for r in runs) for part in ("client_ms", "server_ms")},
        }

    def relay(self) -> dict:
        fanout = HistoryFanout(self.bench)
        fanout.config = dataclasses.replace(self.bench.config, events=self.relay_events)
        try:
            run = fanout.relay_path(self.relays)
        finally:
            # Running relays would go on reading: their audit reader would chain the next size's
            # filled events while the fill writes the same entries.
            fanout.stop_relays()
        clear_bench_rows(self.bench)
        return {"per_s": run["events_per_s"], "cpu": run["cpu"], "publishers": run["publishers"]}

    def lag(self) -> dict:
        readside = HistoryReadSide(self.bench)
        readside.orders = self.lag_orders
        return readside.lag()

    def admin(self) -> dict:
        sample = str(
            self.bench.scalar(
                "SELECT aggregate_id FROM domain_events_storedevent WHERE position = %s",
                (max(1, self.bench.scalar("SELECT max(position) FROM domain_events_storedevent") // 2),),
            )
        )
        pages = HistoryAdmin(self.bench, sample=sample, runs=self.admin_runs)
        rows = [{**r, "who": "operator"} for r in pages.time_pages(pages.superuser, superuser=True)] + [
            {**r, "who": "staff"} for r in pages.time_pages(pages.staff, superuser=False)
        ]
        slowest = max(rows, key=lambda r: r["median_s"])
        return {"pages": rows, "slowest": slowest}

    def month_partition(self, start, table: str = DELIVERIES) -> str | None:
        """The partition of `table` holding exactly the month from `start`, if it is partitioned."""
        db = self.bench.db
        if not db.execute("SELECT 1 FROM pg_partitioned_table WHERE partrelid = %s::regclass", (table,)).fetchone():
            return None
        for name, bound in db.execute(
            "SELECT c.oid::regclass::text, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            (table,),
        ).fetchall():
            found = BOUND.search(bound or "")
            if found and db.execute("SELECT %s::timestamptz = %s", (found.group(1), start)).fetchone()[0]:
                return name
        return None

    def retention(self, shape: Shape) -> dict:
        start = shape.start
        end = months_after(start, 1)
        result: dict[str, object] = {"month": f"{start:%Y-%m}", "partition": self.month_partition(start)}
        with psycopg.connect(self.bench.config.database_url) as conn:
            with conn.transaction(force_rollback=True):
                t0 = time.perf_counter()
                result["deleted"] = conn.execute(DELETE_MONTH, (start, end)).rowcount
                result["delete_s"] = time.perf_counter() - t0
            partition = result["partition"]
            if partition is not None:
                with conn.transaction(force_rollback=True):
                    t0 = time.perf_counter()
                    conn.execute(
                        f"CREATE TEMP TABLE kept ON COMMIT DROP AS SELECT * FROM {partition}"
                        " WHERE status <> 'succeeded'"
                    )
                    conn.execute(f"TRUNCATE {partition}")
                    kept = conn.execute(f"INSERT INTO {partition} SELECT * FROM kept").rowcount
                    result["truncate_s"] = time.perf_counter() - t0
                    result["kept"] = kept
        return result

    # --- the section -----------------------------------------------------------------------------

    def at(self, events: int) -> dict:
        say = self.bench.say
        shape, filled = self.fill(events)
        out: dict[str, object] = {"fill": filled}
        out["publish"] = self.publish()
        say(
            f"    publish with positions, {self.publish_procs} publishers: {fmt_rate(out['publish']['per_s'])} events/s"
        )
        out["relay"] = self.relay()
        say(f"    relay path, {self.relays} relays: {fmt_rate(out['relay']['per_s'])} events/s")
        out["lag"] = self.lag()
        out["admin"] = self.admin()
        slowest = out["admin"]["slowest"]
        say(f"    slowest admin page: {slowest['page']} ({slowest['who']}) {slowest['median_s'] * 1000:.0f} ms")
        out["retention"] = retention = self.retention(shape)
        say(
            f"    retention of {retention['month']}: DELETE of {retention['deleted']:,} deliveries"
            f" {retention['delete_s']:.2f} s"
            + (
                f", TRUNCATE of {retention['partition']} {retention['truncate_s']:.2f} s"
                if retention["partition"]
                else " (deliveries not partitioned by month)"
            )
        )
        return out

    def run(self) -> dict:
        say = self.bench.say
        say(
            f"Benchmark history: flat cost as the history grows, at {', '.join(f'{n:,}' for n in self.sizes)}"
            " stored events"
        )
        self.results = {"sizes": {}}
        # The relays this section starts would prune every succeeded delivery older than a week,
        # the history's months with them, and time that work as part of the relay path: their
        # retention is set past the history's age (retention has its own line).
        kept = {name: os.environ.get(name) for name in NO_PRUNING}
        os.environ.update(NO_PRUNING)
        try:
            for events in self.sizes:
                self.results["sizes"][events] = self.at(events)
        finally:
            for name, value in kept.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        clear_bench_rows(self.bench)
        return self.results

    # --- figures ---------------------------------------------------------------------------------

    def lines(self) -> list[dict]:
        """Per size past the first, each line's figure beside the first size's, higher-is-better ratios."""
        sizes = self.results["sizes"]
        first_size = min(sizes)
        first = sizes[first_size]
        out = []
        for size, run in sorted(sizes.items()):
            if size == first_size:
                continue
            for key, label in (
                ("publish", f"publish with positions, {self.publish_procs} publishers"),
                ("relay", f"relay path, 2 publishers, {self.relays} relays"),
            ):
                out.append(
                    {
                        "what": f"{label}, {size:,} stored events",
                        "figure": f"{fmt_rate(run[key]['per_s'])} events/s",
                        "ceiling": f"at {first_size:,}: {fmt_rate(first[key]['per_s'])} events/s",
                        "ratio": fmt_ratio(run[key]["per_s"] / first[key]["per_s"]),
                        "cpu_ratio": fmt_ratio(cpu_total(first[key]["cpu"]) / cpu_total(run[key]["cpu"])),
                        "cpu": fmt_cpu(run[key]["cpu"]),
                        "first_cpu": fmt_cpu(first[key]["cpu"]),
                    }
                )
            lag, first_lag = run["lag"], first["lag"]
            out.append(
                {
                    "what": f"commit to dashboard, {size:,} stored events",
                    "figure": f"p50 {lag['p50_s'] * 1000:.0f} ms, p99 {lag['p99_s'] * 1000:.0f} ms",
                    "ceiling": f"at {first_size:,}: p50 {first_lag['p50_s'] * 1000:.0f} ms,"
                    f" p99 {first_lag['p99_s'] * 1000:.0f} ms",
                    "ratio": fmt_ratio(first_lag["p50_s"] / lag["p50_s"]),
                    "cpu_ratio": "—",
                    "cpu": "—",
                    "first_cpu": "—",
                }
            )
        return out

    def report(self) -> str:
        sizes = self.results["sizes"]
        lines = table(
            ["history: a line at a size", "figure", "at the first size", "ratio", "CPU ms py+pg", "CPU ratio"],
            [
                [r["what"], r["figure"], r["ceiling"], r["ratio"], r["cpu"] + " / " + r["first_cpu"], r["cpu_ratio"]]
                for r in self.lines()
            ],
            notes=[
                "Ratio: the first size's cost over this size's (for rates, this size's over the first's): higher is"
                f" better, goal ≥ {GOAL:.2f} (a cost at most 1.1 x the first size's). Lag: p50.",
                f"Publish: {self.publish_events} events x {self.publish_rounds} rounds, the median; relay path:"
                f" {self.relay_events} events x {HANDLERS_PER_EVENT} handlers; lag: {self.lag_orders} orders.",
            ],
        )
        rows = []
        for size, run in sorted(sizes.items()):
            filled, retention, slowest = run["fill"], run["retention"], run["admin"]["slowest"]
            rows.append(
                [
                    f"{size:,}",
                    f"{filled['seconds']:.0f} s",
                    f"{filled['database_bytes'] / 2**30:.2f} GiB",
                    f"{retention['deleted']:,} in {retention['delete_s']:.2f} s",
                    "—" if retention["partition"] is None else f"{retention['truncate_s']:.2f} s",
                    f"{slowest['median_s'] * 1000:.0f} ms ({slowest['page']}, {slowest['who']})",
                ]
            )
        per_size = table(
            ["stored events", "fill", "database", "a month's deliveries: DELETE", "TRUNCATE", "slowest admin page"],
            rows,
            notes=[
                "Retention: the history's first month's succeeded deliveries; one DELETE, or TRUNCATE of the"
                " month's partition when the deliveries are partitioned (rows that stay moved out and back); both"
                " rolled back.",
                f"Admin: median of {self.admin_runs} fetches after a warm-up, operator and biggest tenant's staff;"
                f" budget {ADMIN_BUDGET_S * 1000:.0f} ms.",
            ],
        )
        return lines + "\n\n" + per_size

    def summary_rows(self) -> list[dict]:
        out = [{k: r[k] for k in ("what", "figure", "ceiling", "ratio", "cpu_ratio")} for r in self.lines()]
        for size, run in sorted(self.results["sizes"].items()):
            retention, slowest = run["retention"], run["admin"]["slowest"]
            if retention["partition"] is None:
                out.append(
                    {
                        "what": f"retention of a month by DELETE, {size:,} stored events",
                        "figure": f"{retention['delete_s']:.2f} s ({retention['deleted']:,} deliveries)",
                        "ceiling": "— (deliveries not partitioned)",
                        "ratio": "—",
                        "cpu_ratio": "—",
                    }
                )
            else:
                out.append(
                    {
                        "what": f"retention of a month by TRUNCATE of its partition, {size:,} stored events",
                        "figure": f"{retention['truncate_s']:.2f} s",
                        "ceiling": f"DELETE {retention['delete_s']:.2f} s ({retention['deleted']:,} deliveries)",
                        "ratio": fmt_ratio(retention["delete_s"] / retention["truncate_s"]),
                        "cpu_ratio": "—",
                    }
                )
            out.append(
                {
                    "what": f"slowest admin list page, {size:,} stored events",
                    "figure": f"{slowest['median_s'] * 1000:.0f} ms ({slowest['page']}, {slowest['who']})",
                    "ceiling": f"budget {ADMIN_BUDGET_S * 1000:.0f} ms",
                    "ratio": fmt_ratio(ADMIN_BUDGET_S / slowest["median_s"]),
                    "cpu_ratio": "—",
                }
            )
        return out
