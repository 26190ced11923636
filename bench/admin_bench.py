"""Benchmark 3: the admin's stored-event and delivery lists at 300,000 events and 1,500,000 deliveries (by default).

Seeds the bench database with SQL (generate_series): BENCH_ADMIN_EVENTS events (default 300,000;
1,000,000 adds about three minutes to the run) of the ten first registered event types, over five
tenants of unequal size, three events per aggregate, each with five deliveries over ten handlers
(BENCH_ADMIN_DELIVERIES_PER_EVENT), mostly succeeded, some pending (the newest), failed (recent),
dead and skipped (anywhere), a few held
back. The secondary indexes are dropped during the load and built again after it, then the tables
are vacuumed and analysed, as autovacuum would have done on a live system.

Then each changelist page is fetched through Django's test client, logged in as a superuser and as
a tenant's staff member (the biggest tenant's): the first page, each filter, a search by aggregate
id, page 50. One fetch warms up; the figure is the median of BENCH_ADMIN_RUNS (5) more.
"""

from __future__ import annotations

import statistics
import time
import warnings

from bench.harness import Bench, env_int, table

BUDGET_S = 0.300
TENANTS = 5
HANDLERS = 10
TYPES = 10
# Tenant of event i (i % 20): 40 %, 25 %, 20 %, 10 %, 5 % of the events.
TENANT_OF = (
    "CASE WHEN g %% 20 < 8 THEN 1 WHEN g %% 20 < 13 THEN 2 WHEN g %% 20 < 17 THEN 3 WHEN g %% 20 < 19 THEN 4 ELSE 5 END"
)


class AdminBenchmark:
    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        bench.setup_django()
        # The test client serves no static files; whitenoise says so once per process.
        warnings.filterwarnings("ignore", "No directory at", UserWarning)
        self.events = env_int("BENCH_ADMIN_EVENTS", 300_000)
        self.per_event = env_int("BENCH_ADMIN_DELIVERIES_PER_EVENT", 5)
        self.runs = env_int("BENCH_ADMIN_RUNS", 5)
        self.results: dict[str, object] = {}

    # --- seed ----------------------------------------------------------------------------------

    def seed(self) -> dict:
        from django.contrib.auth import get_user_model
        from django.utils import timezone

        from domain_events.models import Subscriber
        from domain_events.registry import registry
        from domain_events.subscriptions import subscriptions
        from tenants.models import Tenant

        started = time.monotonic()
        self.bench.reset_outbox()
        tenants = [
            Tenant.objects.create(slug=f"admin-bench-{i}", name=f"Admin bench store {i}") for i in range(1, TENANTS + 1)
        ]
        User = get_user_model()
        self.superuser = User.objects.create_superuser("admin-bench-root", "", "x", tenant=None)
        self.staff = User.objects.create_user("admin-bench-staff", "", "x", tenant=tenants[0], is_staff=True)
        types = sorted(registry.types())[:TYPES]
        handlers = sorted(s.name for s in subscriptions.all())[:HANDLERS]
        for i in range(len(handlers), HANDLERS):
            # Handlers deployed once and gone from the code: known from their Subscriber rows.
            handlers.append(f"retired.handler_{i}")
            Subscriber.objects.create(
                name=handlers[-1], mode="on_commit", first_position=0, covered_position=0, last_seen_at=timezone.now()
            )
        db = self.bench.db
        saved = self._drop_secondary_indexes()
        n, k = self.events, self.per_event
        db.execute(
            f"""
INSERT INTO domain_events_storedevent
    (event_id, type, version, tenant_id, aggregate_id, occurred_at, recorded_at, correlation_id, causation_id,
     payload, position)
SELECT gen_random_uuid(),
       (%(types)s::text[])[1 + (g * 7 + g / 1000) %% {len(types)}],
       1,
       (%(tenants)s::uuid[])[{TENANT_OF}],
       md5('aggregate' || (g / 3))::uuid,
       now() - (%(n)s - g) * interval '1 second',
       now() - (%(n)s - g) * interval '1 second',
       md5('correlation' || (g / 3))::text,
       gen_random_uuid(),
       jsonb_build_object('n', g, 'sku', 'SKU-' || (g %% 5000), 'quantity', 1 + g %% 4, 'note', repeat('x', 120)),
       g
  FROM generate_series(1, %(n)s) g""",
            {"types": types, "tenants": [t.id for t in tenants], "n": n},
        )
        db.execute("SELECT setval('domain_events_position_seq', %s)", (n,))
        # Status by position in the stream: pending only among the newest, failed among the recent.
        db.execute(
            f"""
INSERT INTO domain_events_delivery
    (stored_event_id, handler, event_type, tenant_id, aggregate_id, status, attempts, next_attempt_at, lease_token,
     last_error, held_by, sent_at, started_at, resolution, created_at, updated_at, completed_at, event_recorded_at)
SELECT e.id, (%(handlers)s::text[])[1 + (e.id + h) %% {HANDLERS}], e.type, e.tenant_id, e.aggregate_id, s.status,
       CASE s.status WHEN 'succeeded' THEN 1 WHEN 'pending' THEN 0 ELSE 3 END,
       CASE WHEN s.status = 'pending' AND e.id %% 14 = 0 THEN '9999-01-01'::timestamptz
            ELSE e.recorded_at + interval '1 minute' END,
       NULL,
       CASE WHEN s.status IN ('failed', 'dead', 'skipped') THEN 'TimeoutError: upstream did not answer' ELSE '' END,
       CASE WHEN s.status = 'pending' AND e.id %% 7 = 0 THEN e.id * {k} ELSE NULL END,
       NULL, NULL,
       CASE WHEN s.status = 'skipped' THEN 'skipped by admin-bench-root: bad data' ELSE '' END,
       e.recorded_at, e.recorded_at,
       CASE WHEN s.status = 'succeeded' THEN e.recorded_at + interval '50 milliseconds' END,
       e.recorded_at
  FROM domain_events_storedevent e
 CROSS JOIN generate_series(0, {k - 1}) h
 CROSS JOIN LATERAL (SELECT CASE
       WHEN e.id > %(n)s * 0.99 AND (e.id + h) %% 2 = 0 THEN 'pending'
       WHEN e.id > %(n)s * 0.9 AND (e.id * 31 + h) %% 100 = 0 THEN 'failed'
       WHEN (e.id * 17 + h) %% 200 = 0 THEN 'dead'
       WHEN (e.id * 13 + h) %% 250 = 0 THEN 'skipped'
       ELSE 'succeeded' END AS status) s""",
            {"handlers": handlers, "n": n},
        )
        self._create_indexes(saved)
        db.execute("VACUUM ANALYZE domain_events_storedevent")
        db.execute("VACUUM ANALYZE domain_events_delivery")
        counts = dict(
            db.execute("SELECT status, count(*) FROM domain_events_delivery GROUP BY status ORDER BY 1").fetchall()
        )
        self.sample = db.execute(
            "SELECT aggregate_id FROM domain_events_storedevent WHERE tenant_id = %s AND id = %s",
            (tenants[0].id, n // 2 - (n // 2) % 20),
        ).fetchone()[0]
        self.tenants, self.types, self.handlers = tenants, types, handlers
        return {
            "seconds": time.monotonic() - started,
            "events": self.bench.scalar("SELECT count(*) FROM domain_events_storedevent"),
            "deliveries": sum(counts.values()),
            "statuses": counts,
        }

    def _drop_secondary_indexes(self) -> list[str]:
        """Indexes that back no constraint, dropped for the load (one CREATE INDEX beats millions of inserts)."""
        rows = self.bench.db.execute(
            """
SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
  FROM pg_index i
 WHERE i.indrelid IN ('domain_events_storedevent'::regclass, 'domain_events_delivery'::regclass)
   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)"""
        ).fetchall()
        for name, _ in rows:
            self.bench.db.execute(f'DROP INDEX "{name}"')
        # A partitioned table's index is defined `ON ONLY` it; made again, it must reach its partitions.
        return [definition.replace(" ON ONLY ", " ON ") for _, definition in rows]

    def _create_indexes(self, definitions: list[str]) -> None:
        self.bench.db.execute("SET maintenance_work_mem = '256MB'")
        for definition in definitions:
            self.bench.db.execute(definition)

    # --- measure -------------------------------------------------------------------------------

    def pages(self, *, superuser: bool) -> list[tuple[str, str, dict]]:
        events, deliveries = "/admin/domain_events/storedevent/", "/admin/domain_events/delivery/"
        small_tenant = str(self.tenants[-1].id)
        out = [
            ("events: first page", events, {}),
            (f"events: type = {self.types[3]}", events, {"type__exact": self.types[3]}),
        ]
        if superuser:
            out.append(("events: smallest tenant (5 %)", events, {"tenant_id__exact": small_tenant}))
        out += [
            ("events: search by aggregate id", events, {"q": str(self.sample)}),
            ("events: page 50", events, {"p": 50}),
            ("deliveries: first page", deliveries, {}),
        ]
        for status in ("pending", "failed", "dead", "skipped", "succeeded"):
            out.append((f"deliveries: status = {status}", deliveries, {"status__exact": status}))
        out += [
            ("deliveries: held by a dead letter", deliveries, {"held": "dead"}),
            ("deliveries: waiting for an earlier event", deliveries, {"held": "waiting"}),
            (f"deliveries: handler = {self.handlers[-1]}", deliveries, {"handler__exact": self.handlers[-1]}),
            (f"deliveries: event type = {self.types[3]}", deliveries, {"event_type__exact": self.types[3]}),
        ]
        if superuser:
            out.append(("deliveries: smallest tenant (5 %)", deliveries, {"tenant_id__exact": small_tenant}))
        out += [
            (
                f"deliveries: dead of handler {self.handlers[2]}",
                deliveries,
                {"status__exact": "dead", "handler__exact": self.handlers[2]},
            ),
            ("deliveries: search by aggregate id", deliveries, {"q": str(self.sample)}),
            ("deliveries: page 50", deliveries, {"p": 50}),
        ]
        return out

    def time_pages(self, user, *, superuser: bool) -> list[dict]:
        from django.test import Client

        client = Client()
        client.force_login(user)
        rows = []
        for label, url, params in self.pages(superuser=superuser):
            response = client.get(url, params)
            if response.status_code != 200:
                raise RuntimeError(f"{label}: HTTP {response.status_code} for {url} {params}")
            timings = []
            for _ in range(self.runs):
                t0 = time.perf_counter()
                client.get(url, params)
                timings.append(time.perf_counter() - t0)
            rows.append({"page": label, "median_s": statistics.median(timings), "max_s": max(timings)})
        return rows

    def django_defaults(self) -> list[dict]:
        """For reference: what Django's changelist ran before, per page, on the same tables."""
        statements = [
            ("COUNT(*) of the deliveries (the paginator)", "SELECT count(*) FROM domain_events_delivery"),
            ("SELECT DISTINCT handler (one filter's choices)", "SELECT DISTINCT handler FROM domain_events_delivery"),
            ("COUNT(*) of the events", "SELECT count(*) FROM domain_events_storedevent"),
            ("SELECT DISTINCT type (one filter's choices)", "SELECT DISTINCT type FROM domain_events_storedevent"),
        ]
        rows = []
        for label, statement in statements:
            timings = []
            for _ in range(3):
                t0 = time.perf_counter()
                self.bench.db.execute(statement).fetchall()
                timings.append(time.perf_counter() - t0)
            rows.append({"what": label, "median_s": statistics.median(timings)})
        return rows

    def run(self) -> dict:
        say = self.bench.say
        say(f"Benchmark 3: admin lists at {self.events:,} events and {self.events * self.per_event:,} deliveries")
        seeded = self.seed()
        say(
            f"  seeded {seeded['events']:,} events and {seeded['deliveries']:,} deliveries in {seeded['seconds']:.0f} s"
            f" ({', '.join(f'{s} {c:,}' for s, c in seeded['statuses'].items())})"
        )
        self.results = {
            "seed": seeded,
            "superuser": self.time_pages(self.superuser, superuser=True),
            "staff": self.time_pages(self.staff, superuser=False),
            "django_defaults": self.django_defaults(),
        }
        return self.results

    def report(self) -> str:
        staff = {r["page"]: r for r in self.results["staff"]}
        rows = []
        for r in self.results["superuser"]:
            mine = staff.get(r["page"])
            rows.append(
                [
                    r["page"],
                    f"{r['median_s'] * 1000:.0f}",
                    "—" if mine is None else f"{mine['median_s'] * 1000:.0f}",
                    f"{BUDGET_S * 1000:.0f}",
                    "yes" if r["median_s"] < BUDGET_S and (mine is None or mine["median_s"] < BUDGET_S) else "NO",
                ]
            )
        seeded = self.results["seed"]
        return table(
            ["admin changelist page", "superuser ms", "tenant staff ms", "budget ms", "within"],
            rows,
            notes=[
                f"{seeded['events']:,} events, {seeded['deliveries']:,} deliveries"
                f" ({', '.join(f'{s} {c:,}' for s, c in seeded['statuses'].items())}); {TENANTS} tenants"
                f" (40/25/20/10/5 %), {TYPES} event types, {HANDLERS} handlers.",
                f"Median of {self.runs} fetches after one warm-up, Django's test client in the bench process"
                " (template rendering included); staff: the biggest tenant's, who sees only its rows.",
                "For reference, single statements Django's defaults ran on every list page, same tables: "
                + "; ".join(f"{r['what']} {r['median_s'] * 1000:.0f} ms" for r in self.results["django_defaults"])
                + ".",
            ],
        )

    def summary_rows(self) -> list[dict]:
        worst = max(self.results["superuser"] + self.results["staff"], key=lambda r: r["median_s"])
        return [
            {
                "what": f"slowest admin list page, {self.events:,} events x {self.per_event} deliveries",
                "figure": f"{worst['median_s'] * 1000:.0f} ms ({worst['page']})",
                "ceiling": f"budget {BUDGET_S * 1000:.0f} ms",
                "ratio": f"{BUDGET_S / worst['median_s']:.2f}",  # higher is better, as on every line
                "cpu_ratio": "—",
            }
        ]
