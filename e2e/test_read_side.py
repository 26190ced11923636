"""The read side against the real modules: random histories of orders, cancellations, declined
payments, restocks and shipments give live read models equal to a full rebuild and to the figures
computed straight from the orders tables; a rebuild racing live orders never shows partial figures."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import defaultdict
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.models import Generation, OrderSummary, ProductSales, TenantDay, TenantMonth, TenantTotals
from analytics.projections import SALES, generation_for
from analytics.services import projection_check, projection_rebuild
from analytics.tests.helpers import OrderStory, line, project
from core.errors import ApplicationError
from domain_events.bus import event_bus
from domain_events.models import Delivery
from inventory.services import product_create, product_restock
from orders.models import Order, OrderItem
from orders.services import order_cancel, order_fulfill, order_place
from tenants.services import token_issue
from tenants.tests.factories import TenantFactory, UserFactory
from testsupport.outbox import run_deliveries_now
from testsupport.processes import ROOT, subprocess_env

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SKUS = ("BOOK-A", "BOOK-B", "BOOK-C")
PRICES = {"BOOK-A": Decimal("12.50"), "BOOK-B": Decimal("7.99"), "BOOK-C": Decimal("30.00")}
VISA, DECLINED = "tok_visa", "tok_chargeDeclined"


def settle() -> None:
    """Run every open delivery here, as relays and workers would, until the saga is at rest."""
    for _ in range(10):
        if not Delivery.objects.filter(status__in=Delivery.OPEN).exists():
            return
        for subscription in event_bus.subscriptions():
            run_deliveries_now(subscription.name)
    raise AssertionError("the saga did not come to rest")


def live_rows(tenant_id) -> dict[str, list[tuple]]:
    """The tenant's live read-model rows, without ids and generations."""
    generation = generation_for(projection=SALES, target="live")
    rows = {}
    for model in (OrderSummary, TenantMonth, TenantDay, TenantTotals, ProductSales):
        fields = [f.name for f in model._meta.concrete_fields if f.name not in ("id", "generation")]
        values = model.objects.filter(generation=generation, tenant_id=tenant_id).values_list(*fields)
        rows[model.__name__] = sorted(tuple(str(v) for v in row) for row in values)
    return rows


def figures_from_orders(tenant) -> dict:
    """The same figures computed straight from the orders tables."""
    zone = ZoneInfo(tenant.timezone)
    months: dict = defaultdict(lambda: [0, 0, 0, Decimal("0.00")])  # orders, paid, cancelled, revenue
    products: dict = defaultdict(lambda: [0, Decimal("0.00")])
    for order in Order.objects.filter(tenant=tenant):
        month = months[order.created_at.astimezone(zone).date().replace(day=1)]
        month[0] += 1
        if order.status in ("confirmed", "fulfilled"):
            month[1] += 1
            month[3] += order.total_amount
        if order.status == "cancelled":
            month[2] += 1
    for item in OrderItem.objects.filter(order__tenant=tenant, order__status__in=("confirmed", "fulfilled")):
        products[item.sku][0] += item.quantity
        products[item.sku][1] += item.quantity * item.unit_price
    return {
        "months": {m: tuple(v) for m, v in months.items()},
        "pending": Order.objects.filter(tenant=tenant, status="confirmed").count(),
        "products": {sku: tuple(v) for sku, v in products.items() if v[0]},
        "statuses": sorted((str(o.id), o.status, o.total_amount) for o in Order.objects.filter(tenant=tenant)),
    }


def figures_from_read_models(tenant) -> dict:
    generation = generation_for(projection=SALES, target="live")
    months = TenantMonth.objects.filter(generation=generation, tenant_id=tenant.id)
    totals = TenantTotals.objects.filter(generation=generation, tenant_id=tenant.id).first()
    products = ProductSales.objects.filter(generation=generation, tenant_id=tenant.id, units__gt=0)
    summaries = OrderSummary.objects.filter(generation=generation, tenant_id=tenant.id)
    return {
        "months": {m.month: (m.orders, m.paid_orders, m.cancelled, m.revenue) for m in months},
        "pending": totals.pending_fulfillment if totals else 0,
        "products": {p.sku: (p.units, p.revenue) for p in products},
        "statuses": sorted((str(s.order_id), s.status, s.total_amount) for s in summaries),
    }


placing = st.tuples(
    st.just("place"),
    st.lists(st.tuples(st.sampled_from(SKUS), st.integers(1, 3)), min_size=1, max_size=3, unique_by=lambda t: t[0]),
    st.sampled_from([VISA, VISA, DECLINED]),
)
history = st.lists(
    st.one_of(
        placing,
        st.tuples(st.just("cancel"), st.integers(0, 20)),
        st.tuples(st.just("fulfill"), st.integers(0, 20)),
        st.tuples(st.just("restock"), st.sampled_from(SKUS), st.integers(1, 3)),
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=history, zone=st.sampled_from(["UTC", "America/New_York", "Asia/Tokyo"]))
def test_live_read_models_equal_a_full_rebuild_and_the_orders_tables(steps, zone):
    tenant = TenantFactory(timezone=zone)
    customer = UserFactory(tenant=tenant)
    products = {
        sku: product_create(tenant=tenant, sku=sku, title=sku.title(), price=PRICES[sku], stock=2) for sku in SKUS
    }
    orders: list[Order] = []
    for step in steps:
        if step[0] == "place":
            items = [{"sku": sku, "quantity": quantity} for sku, quantity in step[1]]
            orders.append(order_place(tenant=tenant, customer=customer, items=items, payment_token=step[2]))
        elif step[0] == "restock":
            product_restock(product=products[step[1]], quantity=step[2])
        elif orders:
            order = orders[step[1] % len(orders)]
            try:
                if step[0] == "cancel":
                    order_cancel(order=order, reason="customer_request", by=None)
                else:
                    order_fulfill(order=order, tracking_number="1Z")
            except ApplicationError:
                pass  # not allowed in the order's state: nothing happened
        settle()
    project()

    assert figures_from_read_models(tenant) == figures_from_orders(tenant)
    live = live_rows(tenant.id)
    projection_rebuild(name=SALES, batch_size=7)
    assert live_rows(tenant.id) == live
    assert projection_check(name=SALES).differences == []


def test_a_rebuild_racing_live_orders_ends_equal_and_the_dashboard_never_shows_partial_figures(
    tenant, staff, live_server
):
    """The dashboard is read over real HTTP (a live server on a socket) while the command runs."""
    token = token_issue(user=staff).key
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"

    def dashboard() -> dict:
        response = session.get(f"{live_server.url}/api/v1/dashboard/", timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    for _ in range(250):
        OrderStory(tenant, line("BOOK-1", 1, "10.00")).placed().confirmed()
    project()
    start = dashboard()
    assert start["orders_this_month"] == 250

    rebuild = subprocess.Popen(
        [sys.executable, "manage.py", "rebuild_projections", "--batch-size", "5"],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[tuple[int, str]] = []
    during_rebuild = 0
    placed = 250
    while rebuild.poll() is None:
        OrderStory(tenant, line("BOOK-1", 1, "10.00")).placed().confirmed()
        placed += 1
        project()
        body = dashboard()
        seen.append((body["orders_this_month"], body["revenue_this_month"]))
        during_rebuild += Generation.objects.filter(projection=SALES, target="rebuild").exists()
        time.sleep(0.01)
    _, err = rebuild.communicate()
    assert rebuild.returncode == 0, err
    assert during_rebuild >= 3, "the dashboard was read while the rebuild ran"

    counts = [orders for orders, _ in seen]
    assert min(counts) >= 250, "never zero, never half"
    assert counts == sorted(counts), "figures only ever grew: no older or partial set was shown"
    # Each read shows the figures at one position. The swap may land between an order's placing
    # and its confirmation (two transactions), so the newest order may be counted before it is
    # paid; no read may show more than that one order unpaid, or money without its order.
    paid = [Decimal(revenue) / Decimal("10.00") for _, revenue in seen]
    assert all(orders - 1 <= n <= orders for (orders, _), n in zip(seen, paid, strict=True)), seen
    assert paid == sorted(paid), "revenue only ever grew"

    project()
    end = dashboard()
    assert end["orders_this_month"] == placed, "no event recorded during the rebuild was missed"
    assert projection_check(name=SALES).differences == []
