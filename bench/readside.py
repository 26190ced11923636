"""Processes of the read-side benchmark (`readside_bench.py`), one per sub-command.

    DJANGO_SETTINGS_MODULE=bench.settings python -m bench.readside rebuild --batch-size 500
    python -m bench.readside ceiling --batch-size 500
    DJANGO_SETTINGS_MODULE=bench.settings python -m bench.readside orders --spec FILE --count 300 --rate 30
    DJANGO_SETTINGS_MODULE=bench.settings python -m bench.readside poll --spec FILE --seconds 600

Each waits at the start line (`ready` / `go`) and prints one JSON line at the end:

* `rebuild`: `analytics.services.projection_rebuild("analytics.sales")`, as `rebuild_projections`
  runs it, with this process's peak RSS (`ru_maxrss`) before and after;
* `ceiling`: the same replay in hand-written SQL (psycopg 3): keyset pages of the stored events by
  position, the same order summaries and aggregates kept in plain dicts, one upsert per table from
  arrays (`unnest`), the checkpoint, one commit per page, into a generation of its own;
* `orders`: places orders through `orders.services.order_place` at a steady rate, stamping the
  time of each commit (an on-commit callback registered before the order's own);
* `poll`: `GET /api/v1/dashboard/` as the tenant's staff, back to back, noting when the `position`
  it reports moves, until `stop` arrives on its stdin.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

SALES = "analytics.sales"
CEILING_TARGET = "bench-ceiling"
TYPES = ("order.placed", "order.confirmed", "order.cancelled", "order.fulfilled", "inventory.stock_adjusted")
CENT = Decimal("0.01")


def peak_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# --- rebuild through the platform -----------------------------------------------------------


def rebuild(batch_size: int) -> None:
    import django

    django.setup()
    from django.db import connection

    from analytics.services import projection_rebuild
    from bench.procs import CpuMeter, child_ready, child_report

    connection.ensure_connection()
    meter = CpuMeter(connection.connection.info.backend_pid)
    before = peak_rss_kb()
    child_ready(meter)
    start = time.time()
    result = projection_rebuild(name=SALES, batch_size=batch_size)
    end = time.time()
    child_report(
        meter, start=start, end=end, events=result.events, position=result.position, rss_before_kb=before,
        rss_kb=peak_rss_kb(),
    )  # fmt: skip


# --- the raw-SQL ceiling ---------------------------------------------------------------------

UPSERT_SUMMARIES = """
INSERT INTO analytics_ordersummary AS t
    (generation, order_id, tenant_id, customer_id, status, cancellation_reason, item_count, total_amount, currency,
     top_item_sku, top_item_title, lines, placed_at, placed_on, confirmed_at, fulfilled_at, cancelled_at, position)
SELECT %s, * FROM unnest(%s::uuid[], %s::uuid[], %s::uuid[], %s::text[], %s::text[], %s::int[], %s::numeric[],
                         %s::text[], %s::text[], %s::text[], %s::jsonb[], %s::timestamptz[], %s::date[],
                         %s::timestamptz[], %s::timestamptz[], %s::timestamptz[], %s::bigint[])
ON CONFLICT (generation, order_id) DO UPDATE SET
    status = EXCLUDED.status, cancellation_reason = EXCLUDED.cancellation_reason,
    confirmed_at = EXCLUDED.confirmed_at, fulfilled_at = EXCLUDED.fulfilled_at,
    cancelled_at = EXCLUDED.cancelled_at, position = EXCLUDED.position"""


def add_rows(table: str, keys: dict[str, str], columns: dict[str, tuple[str, str]]) -> str:
    """One statement that adds a batch's deltas to existing rows and inserts the rest.

    `keys` and `columns` map a column to its array type; `columns` also give the SET expression
    (`t` the row, `d` the delta). An upsert cannot carry a negative delta (the columns' CHECK
    constraints see the proposed row), so the update goes first and the insert takes what it missed.
    """
    names = [*keys, *columns]
    types = [*keys.values(), *(t for t, _ in columns.values())]
    match = " AND ".join(f"t.{k} = d.{k}" for k in keys)
    return (
        f"WITH d ({', '.join(names)}) AS (SELECT * FROM unnest({', '.join(f'%s::{t}[]' for t in types)})),"
        f" u AS (UPDATE {table} t SET {', '.join(f'{c} = {e}' for c, (_, e) in columns.items())} FROM d"
        f" WHERE t.generation = %s AND {match} RETURNING {', '.join(f't.{k}' for k in keys)})"
        f" INSERT INTO {table} (generation, {', '.join(names)}) SELECT %s, {', '.join(f'd.{n}' for n in names)}"
        f" FROM d WHERE NOT EXISTS (SELECT 1 FROM u t WHERE {match})"
    )


def _plus(column: str) -> str:
    return f"t.{column} + d.{column}"


ADD_MONTHS = add_rows(
    "analytics_tenantmonth",
    {"tenant_id": "uuid", "month": "date"},
    {
        "orders": ("int", _plus("orders")),
        "paid_orders": ("int", _plus("paid_orders")),
        "cancelled": ("int", _plus("cancelled")),
        "revenue": ("numeric", _plus("revenue")),
    },
)
ADD_DAYS = add_rows(
    "analytics_tenantday",
    {"tenant_id": "uuid", "day": "date"},
    {"orders": ("int", _plus("orders")), "revenue": ("numeric", _plus("revenue"))},
)
ADD_TOTALS = add_rows(
    "analytics_tenanttotals", {"tenant_id": "uuid"}, {"pending_fulfillment": ("int", _plus("pending_fulfillment"))}
)
ADD_PRODUCTS = add_rows(
    "analytics_productsales",
    {"tenant_id": "uuid", "sku": "text"},
    {
        "title": ("text", "COALESCE(NULLIF(d.title, ''), t.title)"),
        "units": ("int", _plus("units")),
        "revenue": ("numeric", _plus("revenue")),
        "restocked": ("int", _plus("restocked")),
        "on_hand": ("int", "CASE WHEN d.stock_position > t.stock_position THEN d.on_hand ELSE t.on_hand END"),
        "stock_position": ("bigint", "GREATEST(t.stock_position, d.stock_position)"),
    },
)

SUMMARY_COLUMNS = (
    "order_id, tenant_id, customer_id, status, cancellation_reason, item_count, total_amount, currency, top_item_sku,"
    " top_item_title, lines, placed_at, placed_on, confirmed_at, fulfilled_at, cancelled_at, position"
)


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def ceiling(batch_size: int) -> None:
    import psycopg
    from psycopg.types.json import Jsonb

    from bench.procs import CpuMeter, child_ready, child_report

    # Every statement planned with its parameters, as Django sends them: psycopg would otherwise
    # prepare a statement after its fifth run, and a generic plan made while the read models were
    # nearly empty (sequential scans) stays with it as they grow.
    conn = psycopg.connect(os.environ["BENCH_DATABASE_URL"], prepare_threshold=None)
    db = conn.execute
    db("DELETE FROM analytics_generation WHERE projection = %s AND target = %s", (SALES, CEILING_TARGET))
    generation = db(
        "INSERT INTO analytics_generation (projection, target, created_at) VALUES (%s, %s, now()) RETURNING id",
        (SALES, CEILING_TARGET),
    ).fetchone()[0]
    checkpoint = f"{SALES}@{CEILING_TARGET}"
    db(
        "INSERT INTO domain_events_checkpoint (name, position, updated_at, attempts, last_error)"
        " VALUES (%s, 0, now(), 0, '') ON CONFLICT (name) DO UPDATE SET position = 0",
        (checkpoint,),
    )
    zones = {t: ZoneInfo(z) for t, z in db("SELECT id, timezone FROM tenants_tenant")}
    conn.commit()
    meter = CpuMeter(conn.info.backend_pid)
    child_ready(meter)
    start = time.time()
    after = events = 0
    while True:
        rows = db(
            "SELECT position, type, tenant_id, occurred_at, payload FROM domain_events_storedevent"
            " WHERE position > %s AND type = ANY(%s) ORDER BY position LIMIT %s",
            (after, list(TYPES), batch_size),
        ).fetchall()
        if not rows:
            break
        order_ids = list({r[4]["order_id"] for r in rows if r[1] != "inventory.stock_adjusted"})
        summaries = {
            str(s[0]): [str(s[0]), s[1], str(s[2]), *s[3:]]
            for s in db(
                f"SELECT {SUMMARY_COLUMNS} FROM analytics_ordersummary WHERE generation = %s AND order_id = ANY(%s)",
                (generation, order_ids),
            )
        }
        changed: set[str] = set()
        months = defaultdict(lambda: [0, 0, 0, Decimal(0)])
        days = defaultdict(lambda: [0, Decimal(0)])
        totals: dict = defaultdict(int)
        products = defaultdict(lambda: ["", 0, Decimal(0), 0, None, 0])

        def paid(s: list, sign: int, months=months, days=days, products=products) -> None:
            tenant, placed_on = s[1], s[12]
            month = months[(tenant, placed_on.replace(day=1))]
            month[1] += sign
            month[3] += sign * s[6]
            days[(tenant, placed_on)][1] += sign * s[6]
            for line in s[10]:
                p = products[(tenant, line["sku"])]
                p[0] = line["title"]
                p[1] += sign * line["quantity"]
                p[2] += sign * (Decimal(line["unit_price"]) * line["quantity"]).quantize(CENT)

        for position, kind, tenant, occurred_at, payload in rows:
            if kind == "inventory.stock_adjusted":
                p = products[(tenant, payload["sku"])]
                if position > p[5]:
                    p[3] += max(0, payload["quantity_change"])
                    p[4], p[5] = payload["on_hand"], position
                continue
            order_id = payload["order_id"]
            s = summaries.get(order_id)
            if s is not None and position <= s[16]:
                continue
            if kind == "order.placed":
                if s is None:
                    lines = payload["lines"]
                    top = min(
                        lines, key=lambda x: (-x["quantity"], -(Decimal(x["unit_price"]) * x["quantity"]), x["sku"])
                    )
                    placed_on = occurred_at.astimezone(zones.get(tenant, UTC)).date()
                    summaries[order_id] = [
                        order_id, tenant, payload["customer_id"], "placed", "", sum(x["quantity"] for x in lines),
                        Decimal(payload["total_amount"]).quantize(CENT), payload["currency"], top["sku"],
                        top["title"], lines, occurred_at, placed_on, None, None, None, position,
                    ]  # fmt: skip
                    changed.add(order_id)
                    months[(tenant, placed_on.replace(day=1))][0] += 1
                    days[(tenant, placed_on)][0] += 1
                continue
            if s is None:
                continue
            if kind == "order.confirmed" and s[3] == "placed":
                paid(s, +1)
                totals[s[1]] += 1
                s[3], s[13] = "confirmed", occurred_at
            elif kind == "order.cancelled" and s[3] in ("placed", "confirmed"):
                if s[3] == "confirmed":
                    paid(s, -1)
                    totals[s[1]] -= 1
                months[(s[1], s[12].replace(day=1))][2] += 1
                s[3], s[15], s[4] = "cancelled", occurred_at, payload["reason"]
            elif kind == "order.fulfilled" and s[3] == "confirmed":
                totals[s[1]] -= 1
                s[3], s[14] = "fulfilled", occurred_at
            s[16] = position
            changed.add(order_id)

        after = rows[-1][0]
        events += len(rows)
        if changed:
            cols = list(zip(*(summaries[o] for o in changed), strict=True))
            cols[10] = [Jsonb(x) for x in cols[10]]
            db(UPSERT_SUMMARIES, (generation, *map(list, cols)))
        for statement, deltas in ((ADD_MONTHS, months), (ADD_DAYS, days), (ADD_PRODUCTS, products)):
            if deltas:
                keys = list(deltas)
                columns = [list(c) for c in zip(*deltas.values(), strict=True)]
                db(statement, ([k[0] for k in keys], [k[1] for k in keys], *columns, generation, generation))
        if totals:
            db(ADD_TOTALS, (list(totals), list(totals.values()), generation, generation))
        db(
            "UPDATE domain_events_checkpoint SET position = %s, attempts = 0, retry_at = NULL, last_error = '',"
            " updated_at = now() WHERE name = %s",
            (after, checkpoint),
        )
        conn.commit()
    end = time.time()
    child_report(meter, start=start, end=end, events=events, generation=generation, rss_kb=peak_rss_kb())


# --- steady orders and the dashboard -------------------------------------------------------------


def orders(spec_path: str, count: int, rate: float) -> None:
    import django

    django.setup()
    from django.db import transaction

    from bench.procs import child_ready, child_report
    from orders.services import order_place
    from tenants.models import Tenant, User

    spec = json.loads(open(spec_path).read())  # noqa: SIM115
    tenant = Tenant.objects.get(slug=spec["tenant_slug"])
    customer = User.objects.get(pk=spec["customer_id"])
    skus = [p["sku"] for p in spec["products"]]
    child_ready()
    placed: list[tuple[str, float]] = []
    start = time.time()
    for i in range(count):
        due = start + i / rate
        if (wait := due - time.time()) > 0:
            time.sleep(wait)
        committed: list[float] = []
        items = [{"sku": skus[(i * 7 + j * 13) % len(skus)], "quantity": 1 + (i + j) % 3} for j in range(1 + i % 3)]
        with transaction.atomic():
            # Registered first, so it runs first after the commit: before the fast path.
            transaction.on_commit(lambda committed=committed: committed.append(time.time()))
            order = order_place(tenant=tenant, customer=customer, items=items, payment_token="tok_visa")
        placed.append((str(order.id), committed[0]))
    child_report(start=start, end=time.time(), orders=placed)


def poll(spec_path: str, seconds: float) -> None:
    """Poll the dashboard until told `stop` (or for `seconds` at most)."""
    import django

    django.setup()
    import io

    from django.core.management import call_command
    from django.test import Client

    from bench.procs import child_ready, child_report, stop_asked

    spec = json.loads(open(spec_path).read())  # noqa: SIM115
    out = io.StringIO()
    call_command("create_user", spec["tenant_slug"], f"{spec['tenant_slug']}-dashboard", "--staff", stdout=out)
    auth = {"HTTP_AUTHORIZATION": f"Token {out.getvalue().strip()}"}
    client = Client()
    if (response := client.get("/api/v1/dashboard/", **auth)).status_code != 200:
        raise SystemExit(f"GET dashboard/ gave {response.status_code}: {response.content[:300]!r}")
    child_ready()
    seen: list[tuple[float, int]] = []  # (time the answer was back, position), each time it moved
    last = -1
    polls = 0
    start = time.time()
    while time.time() < start + seconds and not stop_asked():
        position = client.get("/api/v1/dashboard/", **auth).json()["position"]
        polls += 1
        if position != last:
            seen.append((time.time(), position))
            last = position
    end = time.time()
    child_report(start=start, end=end, polls=polls, seen=seen)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=("rebuild", "ceiling", "orders", "poll"))
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--spec")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if args.command == "rebuild":
        rebuild(args.batch_size)
    elif args.command == "ceiling":
        ceiling(args.batch_size)
    elif args.command == "orders":
        orders(args.spec, args.count, args.rate)
    else:
        poll(args.spec, args.seconds)


if __name__ == "__main__":
    main()
