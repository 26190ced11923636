"""Benchmark 4: the read side. Rebuilding `analytics.sales` at scale, and how soon the dashboard shows an order.

Rebuild: the bench database is seeded with SQL (generate_series) with order histories, for each
size in BENCH_READSIDE_EVENTS (default 100,000 and 200,000 events; 1,000,000 takes 8 minutes
more): every order is `order.placed` (1-3 lines), then `order.confirmed` (or `order.cancelled`
for one in ten), then `order.fulfilled` (or `order.cancelled` after confirmation, or for the orders cancelled at once an
`inventory.stock_adjusted` of a restock), over two tenants in different timezones and a year of
days; one order's events are interleaved with others' in position order. The payloads are what
the event classes serialize to: one row of each type is loaded through `registry.load` and dumped
again before anything is measured, and must come back unchanged.

Then, in child processes (`bench/readside.py`), the raw-SQL ceiling replays the same rows into a
generation of its own (keyset pages by position, hand-written upserts, one commit per page), and
`projection_rebuild` (what `manage.py rebuild_projections analytics.sales --batch-size N` runs)
rebuilds the projection; each reports its peak RSS (`ru_maxrss`). Both end with the same figures
(checked: totals of every read-model table of the two generations).

Lag: on a fresh outbox, a relay (`manage.py run_outbox_relay`) runs the projection; one process
places BENCH_READSIDE_ORDERS orders through `orders.services.order_place` at BENCH_READSIDE_RATE a
second, stamping each commit; another polls `GET /api/v1/dashboard/` as the tenant's staff. An
order's lag is from its commit to the end of the first dashboard answer whose `position` includes
its `order.placed`.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time

from bench.harness import Bench, env_int, env_ints, fmt_rate, fmt_ratio, percentile, span, table
from bench.procs import PYTHON, ROOT, BenchError, start_line

SALES = "analytics.sales"
# Seconds after the last order is placed that the dashboard is still watched.
SHOW_WITHIN = 3
ANALYTICS_TABLES = (
    "analytics_ordersummary",
    "analytics_tenantmonth",
    "analytics_tenantday",
    "analytics_tenanttotals",
    "analytics_productsales",
)
# What must agree between the rebuild's generation and the ceiling's.
TOTALS = {
    "analytics_ordersummary": "count(*), sum(item_count), sum(total_amount),"
    " count(*) FILTER (WHERE status = 'fulfilled'), count(*) FILTER (WHERE status = 'cancelled'), sum(position)",
    "analytics_tenantmonth": "count(*), sum(orders), sum(paid_orders), sum(cancelled), sum(revenue)",
    "analytics_tenantday": "count(*), sum(orders), sum(revenue)",
    "analytics_tenanttotals": "count(*), sum(pending_fulfillment)",
    "analytics_productsales": "count(*), sum(units), sum(revenue), sum(restocked), sum(on_hand), sum(stock_position)",
}

SEED = """
INSERT INTO domain_events_storedevent
    (event_id, type, version, tenant_id, aggregate_id, occurred_at, recorded_at, correlation_id, causation_id,
     payload, position)
SELECT gen_random_uuid(), x.type, x.version, o.tenant_id, x.aggregate_id, o.at, o.at, 'order-' || o.u,
       gen_random_uuid(), x.payload, o.g + 1
  FROM (SELECT g, g %% 3 AS s, g / 3 - 7 * (g %% 3) AS u FROM generate_series(0, 3 * (%(orders)s + 14) - 1) g) e
 CROSS JOIN LATERAL (
       SELECT e.g, e.s, e.u, (%(tenants)s::uuid[])[1 + e.u %% 2] AS tenant_id, md5('order' || e.u)::uuid AS order_id,
              md5('customer' || e.u %% 5000)::uuid AS customer_id,
              %(t0)s::timestamptz + (e.u::bigint * 31536000 / %(orders)s) * interval '1 second'
                                  + e.s * interval '1 hour' AS at) o
 CROSS JOIN LATERAL (
       SELECT jsonb_agg(jsonb_build_object('sku', sku, 'title', 'Book ' || sku, 'quantity', q,
                                           'unit_price', price::text) ORDER BY i) AS lines,
              sum(price * q)::numeric(14, 2)::text AS total
         FROM (SELECT i, 'SKU-' || lpad(((o.u * 7 + i * 13) %% 500)::text, 4, '0') AS sku, 1 + (o.u + i) %% 3 AS q,
                      ((500 + (o.u * 31 + i * 17) %% 4500) / 100.0)::numeric(10, 2) AS price
                 FROM generate_series(0, o.u %% 3) i) l) l
 CROSS JOIN LATERAL (
       SELECT * FROM (VALUES
         (0, 'order.placed', 1, o.order_id, jsonb_build_object(
             'order_id', o.order_id, 'customer_id', o.customer_id, 'lines', l.lines, 'total_amount', l.total,
             'currency', 'USD', 'payment_token', 'tok_visa')),
         (1, CASE WHEN o.u %% 10 = 0 THEN 'order.cancelled' ELSE 'order.confirmed' END, 1, o.order_id,
             CASE WHEN o.u %% 10 = 0 THEN jsonb_build_object(
                 'order_id', o.order_id, 'reason', 'payment_declined', 'previous_status', 'placed', 'lines', l.lines,
                 'total_amount', l.total, 'currency', 'USD')
             ELSE jsonb_build_object('order_id', o.order_id, 'total_amount', l.total, 'currency', 'USD') END),
         (2, CASE o.u %% 10 WHEN 0 THEN 'inventory.stock_adjusted' WHEN 5 THEN 'order.cancelled'
                            ELSE 'order.fulfilled' END,
             CASE WHEN o.u %% 10 = 0 THEN 2 ELSE 1 END,
             CASE WHEN o.u %% 10 = 0 THEN md5('product' || (l.lines -> 0 ->> 'sku'))::uuid ELSE o.order_id END,
             CASE o.u %% 10
               WHEN 0 THEN jsonb_build_object(
                 'product_id', md5('product' || (l.lines -> 0 ->> 'sku'))::uuid, 'sku', l.lines -> 0 ->> 'sku',
                 'quantity_change', 20 + o.u %% 30, 'on_hand', 100 + o.u %% 70, 'reason', 'restock')
               WHEN 5 THEN jsonb_build_object(
                 'order_id', o.order_id, 'reason', 'customer_request', 'previous_status', 'confirmed',
                 'lines', l.lines, 'total_amount', l.total, 'currency', 'USD')
               ELSE jsonb_build_object(
                 'order_id', o.order_id, 'tracking_number', 'TRK' || lpad(o.u::text, 10, '0'),
                 'shipped_at', to_char(o.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'lines', l.lines)
             END)
       ) v(slot, type, version, aggregate_id, payload) WHERE v.slot = o.s) x
 WHERE e.u >= 0 AND e.u < %(orders)s"""


class ReadSideBenchmark:
    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        bench.setup_django()
        self.sizes = env_ints("BENCH_READSIDE_EVENTS", "100000,200000")
        self.batch = env_int("BENCH_READSIDE_BATCH", 500)
        self.orders = env_int("BENCH_READSIDE_ORDERS", 300)
        self.rate = env_int("BENCH_READSIDE_RATE", 20)
        self.lag_rounds = env_int("BENCH_READSIDE_LAG_ROUNDS", 3)
        self.results: dict[str, object] = {}

    # --- rebuild -------------------------------------------------------------------------------

    def reset(self) -> None:
        self.bench.reset_outbox(*ANALYTICS_TABLES, "analytics_generation")
        self.bench.db.execute("DELETE FROM domain_events_checkpoint WHERE name LIKE %s", (f"{SALES}%",))

    def tenants(self) -> list:
        from tenants.models import Tenant

        if not hasattr(self, "_tenants"):
            self._tenants = [
                Tenant.objects.get_or_create(
                    slug=f"readside-{i}", defaults={"name": f"Read side {i}", "timezone": zone, "currency": "USD"}
                )[0].id
                for i, zone in enumerate(("Europe/Berlin", "America/New_York"))
            ]
        return self._tenants

    def seed(self, events: int) -> dict:
        started = time.monotonic()
        self.reset()
        db = self.bench.db
        # Secondary indexes are dropped for the load and built after it (as Benchmark 3 does).
        saved = db.execute(
            """
SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i
 WHERE i.indrelid = 'domain_events_storedevent'::regclass
   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)"""
        ).fetchall()
        for name, _ in saved:
            db.execute(f'DROP INDEX "{name}"')
        t0 = db.execute("SELECT date_trunc('second', now()) - interval '365 days'").fetchone()[0]
        db.execute(SEED, {"orders": events // 3, "tenants": self.tenants(), "t0": t0})
        db.execute("SELECT setval('domain_events_position_seq', (SELECT max(position) FROM domain_events_storedevent))")
        db.execute("SET maintenance_work_mem = '256MB'")
        for _, definition in saved:
            db.execute(definition)
        db.execute("VACUUM ANALYZE domain_events_storedevent")
        counts = dict(db.execute("SELECT type, count(*) FROM domain_events_storedevent GROUP BY 1 ORDER BY 1"))
        self.check_payloads()
        return {"seconds": time.monotonic() - started, "events": sum(counts.values()), "types": counts}

    def check_payloads(self) -> None:
        """One seeded row of each type, loaded as the projection loads it and dumped again, must not change."""
        from domain_events.events import ENVELOPE_FIELDS
        from domain_events.models import StoredEvent
        from domain_events.registry import registry

        for kind in StoredEvent.objects.values_list("type", flat=True).distinct():
            for row in StoredEvent.objects.filter(type=kind).order_by("position")[:2]:
                event = registry.load(row.type, row.version, row.payload, envelope=row.envelope(), ref=row.ref)
                again = {k: v for k, v in registry.dump(event).items() if k not in ENVELOPE_FIELDS}
                if again != row.payload or type(event).version != row.version:
                    raise BenchError(f"seeded {row.ref} is not what {type(event).__name__} serializes to:\n"
                                     f"  seeded {row.payload}\n  dumped {again}")  # fmt: skip

    def child(self, *args: str) -> dict:
        worker = self.bench.worker(f"readside-{args[0]}", "bench.readside", *args, "--batch-size", self.batch)
        start_line([worker])
        return worker.result(timeout=3600)

    def compare(self, rebuilt: int, ceiling: int) -> list[str]:
        """Tables whose totals differ between the two generations."""
        differ = []
        for name, totals in TOTALS.items():
            sql = f"SELECT {totals} FROM {name} WHERE generation = %s"
            if self.bench.db.execute(sql, (rebuilt,)).fetchone() != self.bench.db.execute(sql, (ceiling,)).fetchone():
                differ.append(name)
        return differ

    def rebuild_at(self, events: int) -> dict:
        say = self.bench.say
        seeded = self.seed(events)
        say(
            f"  seeded {seeded['events']:,} events in {seeded['seconds']:.0f} s"
            f" ({', '.join(f'{t} {c:,}' for t, c in seeded['types'].items())})"
        )
        ceiling = self.child("ceiling")
        say(f"    raw-SQL ceiling: {ceiling['events'] / span([ceiling]):,.0f} events/s")
        rebuild = self.child("rebuild")
        say(f"    rebuild_projections: {rebuild['events'] / span([rebuild]):,.0f} events/s")
        live = self.bench.scalar(
            "SELECT id FROM analytics_generation WHERE projection = %s AND target = 'live'", (SALES,)
        )
        differ = self.compare(live, ceiling["generation"])
        if differ:
            raise BenchError(f"rebuild and raw-SQL ceiling disagree at {events:,} events: {', '.join(differ)}")
        if rebuild["events"] != ceiling["events"]:
            raise BenchError(f"rebuild read {rebuild['events']} events, the ceiling {ceiling['events']}")
        return {"seed": seeded, "rebuild": rebuild, "ceiling": ceiling}

    # --- lag -----------------------------------------------------------------------------------

    def lag(self) -> dict:
        say = self.bench.say
        self.reset()
        done = subprocess.run(
            [PYTHON, "-m", "bench.orders_setup", "--products", "50", "--stock", "1000000"],
            cwd=ROOT,
            env=self.bench.child_env(),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise BenchError(f"seeding the lag benchmark failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        spec = json.loads(done.stdout.strip().splitlines()[-1])
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(spec, f)
        try:
            relay = self.bench.relay("readside-relay")
            # The poller goes on until every order had its chance to show, however slowly a busy
            # machine lets the publisher place them; the cap only bounds a run that went wrong.
            poller = self.bench.worker(
                "readside-poll",
                "bench.readside",
                "poll",
                "--spec",
                f.name,
                "--seconds",
                max(120, 10 * self.orders / self.rate),
            )
            publisher = self.bench.worker(
                "readside-orders", "bench.readside", "orders", "--spec", f.name, "--count", self.orders,
                "--rate", self.rate,
            )  # fmt: skip
            start_line([poller, publisher])
            placed = publisher.result()
            time.sleep(SHOW_WITHIN)
            poller.tell("stop")
            polled = poller.result()
            relay.stop()
        finally:
            os.unlink(f.name)
        ids = [order_id for order_id, _ in placed["orders"]]
        positions = dict(
            self.bench.db.execute(
                "SELECT aggregate_id::text, position FROM domain_events_storedevent"
                " WHERE type = 'order.placed' AND aggregate_id = ANY(%s::uuid[])",
                (ids,),
            ).fetchall()
        )
        lags, missing = [], 0
        for order_id, committed in placed["orders"]:
            position = positions.get(order_id)
            shown = next((t for t, p in polled["seen"] if position is not None and p >= position), None)
            if shown is None:
                missing += 1
            else:
                lags.append(shown - committed)
        if missing:
            raise BenchError(f"{missing} of {len(ids)} orders never showed on the dashboard; see {self.bench.log_dir}")
        poll_ms = (polled["end"] - polled["start"]) / max(1, polled["polls"]) * 1000
        result = {
            "orders": len(ids),
            "rate_asked": self.rate,
            "rate": len(ids) / (placed["end"] - placed["start"]),
            "p50_s": percentile(lags, 50),
            "p99_s": percentile(lags, 99),
            "max_s": max(lags),
            "poll_ms": poll_ms,
        }
        say(
            f"  lag, commit to dashboard: p50 {result['p50_s'] * 1000:.0f} ms, p99 {result['p99_s'] * 1000:.0f} ms"
            f" over {len(ids)} orders at {result['rate']:.0f}/s (one dashboard answer every {poll_ms:.1f} ms)"
        )
        return result

    # --- the section ---------------------------------------------------------------------------

    def run(self) -> dict:
        say = self.bench.say
        say(
            f"Benchmark 4: read side: rebuild of {SALES} at {', '.join(f'{n:,}' for n in self.sizes)} events"
            f" (batches of {self.batch}), lag to the dashboard over {self.orders} orders at {self.rate}/s"
        )
        rounds = [self.lag() for _ in range(max(1, self.lag_rounds))]
        # The round whose p99 is the median stands for the line; every round is kept.
        median = sorted(rounds, key=lambda r: r["p99_s"])[len(rounds) // 2]
        self.results = {"batch": self.batch, "lag": {**median, "rounds": rounds}, "rebuild": {}}
        for events in self.sizes:
            self.results["rebuild"][events] = self.rebuild_at(events)
        self.reset()
        return self.results

    @staticmethod
    def rate_of(report: dict) -> float:
        return report["events"] / span([report])

    @staticmethod
    def cpu_ms(report: dict) -> float:
        return (report["cpu_client"] + report["cpu_server"]) / report["events"] * 1000

    def report(self) -> str:
        rows = []
        runs = self.results["rebuild"]
        first = runs[min(runs)] if runs else None
        for _, run in sorted(runs.items()):
            rebuild, ceiling = run["rebuild"], run["ceiling"]
            rows.append(
                [
                    f"rebuild {SALES}, {run['seed']['events']:,} events",
                    f"{fmt_rate(self.rate_of(rebuild))} events/s",
                    f"{fmt_rate(self.rate_of(ceiling))} events/s",
                    fmt_ratio(self.rate_of(rebuild) / self.rate_of(ceiling)),
                    f"{self.cpu_ms(rebuild):.2f} / {self.cpu_ms(ceiling):.2f}",
                    fmt_ratio(self.cpu_ms(ceiling) / self.cpu_ms(rebuild)),
                    f"{rebuild['rss_kb'] / 1024:.0f} MiB ({rebuild['rss_before_kb'] / 1024:.0f} at start)",
                    f"{ceiling['rss_kb'] / 1024:.0f} MiB",
                    fmt_ratio(rebuild["rss_kb"] / first["rebuild"]["rss_kb"]),
                ]
            )
        rebuild_table = table(
            [
                "read side: rebuild",
                "rebuild",
                "raw SQL, same run",
                "ratio",
                "CPU ms/event py+pg",
                "CPU ratio",
                "peak RSS rebuild",
                "peak RSS raw",
                f"RSS / at {min(runs):,}" if runs else "RSS ratio",
            ],
            rows,
            notes=[
                f"projection_rebuild('{SALES}', batch_size={self.batch}) in a process of its own (what"
                " rebuild_projections runs) against hand-written psycopg 3: keyset pages by position, the same"
                " summaries and aggregates, one statement per table, one commit per page. Both end with the same"
                " totals in every read-model table (checked).",
                "Order histories seeded with SQL: placed (1-3 lines), confirmed or cancelled, fulfilled or cancelled"
                " or a restock; payloads checked against the event classes. Goals: ratio ≥ 0.5, RSS at the largest"
                " size ≤ 1.2 x RSS at the smallest.",
            ],
        )
        lag = self.results["lag"]
        lag_table = table(
            ["read side: commit to dashboard", "p50 ms", "p99 ms", "max ms", "orders", "orders/s", "goal p99 ms"],
            [
                [
                    "order_place, then GET /api/v1/dashboard/ shows its position",
                    f"{lag['p50_s'] * 1000:.0f}",
                    f"{lag['p99_s'] * 1000:.0f}",
                    f"{lag['max_s'] * 1000:.0f}",
                    str(lag["orders"]),
                    f"{lag['rate']:.0f}",
                    "100",
                ]
            ],
            notes=[
                "One relay (run_outbox_relay) runs the projection and the order saga's handlers; orders are placed"
                " through orders.services.order_place in one process (fast path on, as served), the dashboard is"
                " polled back to back through Django's test client in another.",
                f"Lag = end of the first dashboard answer including the order's position - the order's commit; one"
                f" answer every {lag['poll_ms']:.1f} ms, so each figure may be up to that late.",
            ],
        )
        return rebuild_table + "\n\n" + lag_table

    def summary_rows(self) -> list[dict]:
        rows = []
        runs = self.results["rebuild"]
        for _, run in sorted(runs.items()):
            rebuild, ceiling = run["rebuild"], run["ceiling"]
            rows.append(
                {
                    "what": f"rebuild {SALES}, {run['seed']['events']:,} events",
                    "figure": f"{fmt_rate(self.rate_of(rebuild))} events/s, {rebuild['rss_kb'] / 1024:.0f} MiB",
                    "ceiling": f"raw SQL {fmt_rate(self.rate_of(ceiling))} events/s",
                    "ratio": fmt_ratio(self.rate_of(rebuild) / self.rate_of(ceiling)),
                    "cpu_ratio": fmt_ratio(self.cpu_ms(ceiling) / self.cpu_ms(rebuild)),
                }
            )
        lag = self.results["lag"]
        rows.append(
            {
                "what": "commit to dashboard, steady orders",
                "figure": f"p50 {lag['p50_s'] * 1000:.0f} ms, p99 {lag['p99_s'] * 1000:.0f} ms"
                + (f" (median p99 of {len(lag['rounds'])} rounds)" if len(lag.get("rounds", [])) > 1 else ""),
                "ceiling": "goal p99 100 ms",
                "ratio": f"{0.1 / lag['p99_s']:.2f}",  # higher is better: the goal over the p99
                "cpu_ratio": "—",
            }
        )
        return rows
