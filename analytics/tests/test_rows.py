"""Read-model rows as dicts: read by exact key, written whole, counters added without a read."""

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics.models import OrderSummary, ProductSales, TenantMonth
from analytics.rows import _json, _select_sql, row_new, rows_add, rows_get, rows_write

pytestmark = pytest.mark.django_db

T1, T2 = uuid.uuid4(), uuid.uuid4()
MARCH, APRIL = date(2026, 3, 1), date(2026, 4, 1)


def summary(**changes) -> dict:
    row = {
        "order_id": uuid.uuid4(),
        "tenant_id": T1,
        "customer_id": uuid.uuid4(),
        "status": "placed",
        "cancellation_reason": "",
        "item_count": 2,
        "total_amount": Decimal("25.10"),
        "currency": "USD",
        "top_item_sku": "BOOK-1",
        "top_item_title": 'A "quoted" title, with \\ and \u00e9',
        "lines": [{"sku": "BOOK-1", "title": "It's", "quantity": 2, "unit_price": "12.55"}],
        "placed_at": datetime(2026, 3, 10, 15, 0, 0, 123456, tzinfo=UTC),
        "placed_on": date(2026, 3, 10),
        "confirmed_at": None,
        "fulfilled_at": None,
        "cancelled_at": None,
        "position": 7,
    }
    return {**row, **changes}


def test_written_rows_read_back_exactly_and_a_second_write_replaces_them():
    first = summary()
    rows_write(OrderSummary, generation=1, rows=[first])
    [(key, stored)] = rows_get(OrderSummary, generation=1, keys=[(first["order_id"],)]).items()
    assert key == (first["order_id"],)
    assert stored == first

    confirmed = {**first, "status": "confirmed", "confirmed_at": datetime(2026, 3, 11, tzinfo=UTC), "position": 9}
    rows_write(OrderSummary, generation=1, rows=[confirmed])
    assert rows_get(OrderSummary, generation=1, keys=[(first["order_id"],)])[key] == confirmed
    assert OrderSummary.objects.count() == 1


def test_rows_are_read_by_their_exact_keys_in_their_own_generation():
    rows_write(ProductSales, generation=1, rows=[row_new(ProductSales, (T1, "A")), row_new(ProductSales, (T2, "B"))])
    rows_write(ProductSales, generation=2, rows=[row_new(ProductSales, (T1, "B"))])
    # (T1, "B") is made of parts of both stored keys, and is stored only in generation 2.
    found = rows_get(ProductSales, generation=1, keys=[(T1, "B"), (T2, "B"), (T2, "C")])
    assert list(found) == [(T2, "B")]
    assert found[(T2, "B")] == row_new(ProductSales, (T2, "B"))


def test_counters_are_added_to_rows_that_exist_and_start_rows_that_do_not():
    placed = {"orders": 2, "paid_orders": 1, "revenue": Decimal("9.99")}
    rows_add(TenantMonth, generation=1, deltas={(T1, MARCH): placed})
    rows_add(TenantMonth, generation=2, deltas={(T1, MARCH): {"orders": 5}})
    with CaptureQueriesContext(connection) as queries:
        rows_add(
            TenantMonth,
            generation=1,
            deltas={
                # Below zero for a moment would break the columns' CHECK constraints in an upsert.
                (T1, MARCH): {"paid_orders": -1, "cancelled": 1, "revenue": Decimal("-9.99")},
                (T1, APRIL): {"orders": 1},
            },
        )
    assert len(queries) == 1
    months = {
        (m.generation, m.month): (m.orders, m.paid_orders, m.cancelled, m.revenue) for m in TenantMonth.objects.all()
    }
    assert months == {
        (1, MARCH): (2, 0, 1, Decimal("0.00")),
        (1, APRIL): (1, 0, 0, Decimal("0.00")),
        (2, MARCH): (5, 0, 0, Decimal("0.00")),
    }


def test_counters_are_added_and_other_fields_set_or_left_alone():
    """Sales added to a product's figures: its units and revenue grow, its title is the one given,
    and its stock figures stay as they were (a new row starts them at their defaults)."""
    stocked = {**row_new(ProductSales, (T1, "A")), "units": 3, "revenue": Decimal("30.00"), "restocked": 9}
    rows_write(ProductSales, generation=1, rows=[{**stocked, "on_hand": 6, "stock_position": 4}])
    with CaptureQueriesContext(connection) as queries:
        rows_add(
            ProductSales,
            generation=1,
            deltas={
                (T1, "A"): {"units": -1, "revenue": Decimal("-10.00"), "title": "New title"},
                (T1, "B"): {"units": 2, "revenue": Decimal("5.00"), "title": "B"},
            },
            counters=("units", "revenue"),
        )
    assert len(queries) == 1
    found = rows_get(ProductSales, generation=1, keys=[(T1, "A"), (T1, "B")])
    assert found[(T1, "A")] == {
        **stocked,
        "units": 2,
        "revenue": Decimal("20.00"),
        "title": "New title",
        "on_hand": 6,
        "stock_position": 4,
    }
    new = row_new(ProductSales, (T1, "B"))
    assert found[(T1, "B")] == {**new, "units": 2, "revenue": Decimal("5.00"), "title": "B"}


def test_reading_a_few_rows_of_a_large_generation_probes_the_key_for_each():
    """The keys travel as JSON, which the planner takes for a hundred rows: joined as a whole, it
    may read the generation's every row. Each key is a probe of the key's index instead."""
    rows = [summary(placed_at=datetime(2026, 3, 10, tzinfo=UTC), position=n) for n in range(3000)]
    rows_write(OrderSummary, generation=1, rows=rows)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {OrderSummary._meta.db_table}")
    wanted = [(rows[5]["order_id"],), (rows[2900]["order_id"],)]
    with connection.cursor() as cursor:
        keys = _json([{"order_id": str(key)} for (key,) in wanted])
        cursor.execute("EXPLAIN (FORMAT JSON) " + _select_sql(OrderSummary), [keys, 1])
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    scans, nodes = [], [plan[0]["Plan"]]
    while nodes:
        node = nodes.pop()
        nodes.extend(node.get("Plans", ()))
        if node.get("Relation Name") == OrderSummary._meta.db_table:
            scans.append(node)
    assert scans, plan
    assert all(scan["Node Type"] in ("Index Scan", "Index Only Scan") for scan in scans), plan
    assert set(rows_get(OrderSummary, generation=1, keys=wanted)) == set(wanted)
