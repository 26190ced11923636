"""The capacity plan's figures (docs/capacity.md): what one order leaves in the database, and which
of the queries its saga and its readers send could go to a replica.

In one process, on the bench's own database (`BENCH_DATABASE_URL`, emptied first): one bookstore
places `BENCH_CAPACITY_ORDERS` orders (default 300) through the services, every delivery and
position reader runs here as relays and workers would, half the confirmed orders are fulfilled;
then staff read the dashboard, the events feed and each order's timeline once per order. Printed:
events per order and deliveries per event, bytes per stored event and per delivery
(`partitions.table_bytes` / rows: heap, indexes and TOAST of every monthly partition), bytes per
order over every table, the growth that makes for a thousand orders a day, and the queries by kind.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/sw_capacity python -m bench.capacity
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

from domain_events import partitions, tracking  # noqa: E402
from domain_events.models import Delivery, StoredEvent  # noqa: E402
from domain_events.subscriptions import subscriptions  # noqa: E402
from inventory.services import product_create  # noqa: E402
from orders.models import Order  # noqa: E402
from orders.services import order_fulfill, order_place  # noqa: E402
from tenants.services import tenant_create, user_create  # noqa: E402
from testsupport.outbox import run_deliveries_now  # noqa: E402

ORDERS = int(os.environ.get("BENCH_CAPACITY_ORDERS", "300"))


def settle() -> None:
    for _ in range(10):
        if not Delivery.objects.filter(status__in=Delivery.OPEN).exists():
            break
        for subscription in subscriptions.all():
            run_deliveries_now(subscription.name)
    for tracker in subscriptions.trackers():
        tracking.catch_up(tracker.name)


def kind(sql: str) -> str:
    """A query as a replica sees it: a plain read could go there; writes and locking reads cannot."""
    head = sql.lstrip(" \n(").split(None, 1)[0].upper()
    if head in ("SELECT", "WITH") and not re.search(r"\bFOR (UPDATE|NO KEY UPDATE|SHARE)\b|\bINSERT\b|\bUPDATE\b", sql):
        return "read"
    if head in ("SAVEPOINT", "RELEASE", "ROLLBACK", "SET", "BEGIN", "COMMIT"):
        return "transaction control"
    return "write or locking read"


class Tally:
    """Every query of a block by kind, and the seconds each kind took as the client saw them."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.seconds: Counter = Counter()

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.counts[kind(sql)] += 1
            self.seconds[kind(sql)] += time.perf_counter() - started


@contextlib.contextmanager
def tally(queries: dict, phase: str) -> Iterator[None]:
    counter = Tally()
    with connection.execute_wrapper(counter):
        yield
    queries[phase] = (counter.counts, counter.seconds)


def sizes() -> dict[str, tuple[int, int]]:
    """Every ShelfWise table with rows: (bytes with indexes and TOAST, rows). A partitioned table
    (the stored events and deliveries, by month) counts all its partitions, which are not listed
    apart: its own `pg_total_relation_size` is 0."""
    found = {}
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        cursor.execute(
            "SELECT c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
            " AND NOT c.relispartition"
            " AND c.relname NOT LIKE 'django_%%'"
            " AND c.relname NOT LIKE 'auth_%%'"
        )
        for (table,) in cursor.fetchall():
            cursor.execute(f'SELECT count(*) FROM "{table}"')
            rows = cursor.fetchone()[0]
            if rows:
                found[table] = (partitions.table_bytes(table), rows)
    return found


def main() -> int:
    name = connection.settings_dict["NAME"]
    if not name.startswith(("sw_bench", "sw_capacity")):
        sys.exit(f"bench.capacity empties its database: {name!r} is not named sw_bench… or sw_capacity…")
    call_command("migrate", verbosity=0)
    call_command("flush", "--no-input", verbosity=0)
    tenant = tenant_create(slug="capacity")
    customer, _ = user_create(tenant=tenant, username="reader", password="x", validate_password=False)
    _, staff_token = user_create(tenant=tenant, username="staff", password="x", is_staff=True, validate_password=False)
    skus = [f"BOOK-{n}" for n in range(20)]
    for n, sku in enumerate(skus):
        product_create(tenant=tenant, sku=sku, title=f"A book, volume {n}", price=Decimal("12.50"), stock=10**6)
    settle()
    queries: dict[str, tuple[Counter, Counter]] = {}
    started = time.monotonic()
    with tally(queries, "placing the orders (web)"):
        orders = [
            order_place(
                tenant=tenant,
                customer=customer,
                items=[{"sku": skus[(i + k) % len(skus)], "quantity": 1 + k} for k in range(1 + i % 3)],
                payment_token="tok_visa",
            )
            for i in range(ORDERS)
        ]
    with tally(queries, "the saga: relays, workers, readers"):
        settle()
        for order in Order.objects.filter(status="confirmed")[: ORDERS // 2]:
            order_fulfill(order=order, tracking_number="1Z999")
        settle()
    elapsed = time.monotonic() - started
    client = Client(headers={"authorization": f"Token {staff_token.key}"})
    with tally(queries, "staff reading: dashboard, feed, timeline, once per order"):
        for order in orders:
            for path in ("/api/v1/dashboard/", "/api/v1/events/?after=0", f"/api/v1/orders/{order.id}/events/"):
                response = client.get(path)
                assert response.status_code == 200, (path, response.status_code)

    found = sizes()
    events = StoredEvent.objects.count()
    deliveries = Delivery.objects.count()
    total = sum(size for size, _ in found.values())
    out = sys.stdout.write
    out(f"{ORDERS} orders, {events} stored events, {deliveries} deliveries, saga in {elapsed:.1f}s\n")
    out(f"events per order: {events / ORDERS:.2f}; deliveries per event: {deliveries / events:.2f}\n")
    out(
        f"bytes per stored event: {found[partitions.EVENTS][0] / events:.0f}; "
        f"per delivery: {found[partitions.DELIVERIES][0] / deliveries:.0f} (every month's partition)\n"
    )
    for table, (size, rows) in sorted(found.items(), key=lambda kv: -kv[1][0]):
        out(f"  {table:45} {rows:8} rows {size / rows:8.0f} B/row {size / ORDERS:8.0f} B/order\n")
    out(f"every table: {total / ORDERS:.0f} B per order\n")
    per_day = total / ORDERS * 1000
    out(
        f"1,000 orders a day: {per_day / 2**20:.1f} MiB a day, {per_day * 30 / 2**30:.2f} GiB a month, "
        f"{per_day * 365 / 2**30:.1f} GiB a year (deliveries pruned after retention take part of it back)\n"
    )
    for phase, (counts, seconds) in queries.items():
        n, spent = sum(counts.values()), sum(seconds.values())
        out(
            f"{phase}: {n} queries, {counts['read'] / n:.0%} of them plain reads, taking {seconds['read'] / spent:.0%}"
            f" of the {spent:.1f}s the database was asked for ({dict(counts)})\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
