"""The dashboard: this month in the tenant's timezone, from the read models, in two queries."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics.selectors import dashboard_get
from analytics.tests.helpers import OrderStory, line, project
from domain_events.head import head
from tenants.tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


def test_nothing_projected_yet_is_zero_at_position_zero(tenant):
    board = dashboard_get(tenant=tenant)
    assert (board.orders_this_month, board.revenue_this_month, board.position) == (0, Decimal("0.00"), 0)
    assert board.updated_at is None


def test_figures_of_this_month_with_top_products_and_days_in_two_queries(tenant):
    now = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
    OrderStory(tenant, line("BOOK-1", 3, "10.00")).placed(at=datetime(2026, 3, 2, 9, tzinfo=UTC)).confirmed()
    OrderStory(tenant, line("BOOK-2", 1, "5.00")).placed(at=datetime(2026, 3, 20, 9, tzinfo=UTC)).confirmed()
    OrderStory(tenant, line("BOOK-3", 9, "1.00")).placed(at=datetime(2026, 3, 20, 10, tzinfo=UTC)).cancelled()
    OrderStory(tenant, line("BOOK-2", 1, "5.00")).placed(at=datetime(2026, 2, 27, 9, tzinfo=UTC)).confirmed()
    project()

    with CaptureQueriesContext(connection) as queries:
        board = dashboard_get(tenant=tenant, now=now)

    assert len(queries) <= 2
    assert board.orders_this_month == 3
    assert board.cancelled_this_month == 1
    assert board.revenue_this_month == Decimal("35.00")
    assert board.average_order_value == Decimal("17.50")
    assert board.pending_fulfillment == 3
    assert [(p["sku"], p["units"], p["revenue"]) for p in board.top_products] == [
        ("BOOK-1", 3, Decimal("30.00")),
        ("BOOK-2", 2, Decimal("10.00")),
    ]
    assert [(d["date"], d["orders"], d["revenue"]) for d in board.daily_revenue] == [
        (date(2026, 3, 2), 1, Decimal("30.00")),
        (date(2026, 3, 20), 2, Decimal("5.00")),
    ]
    assert board.position == head()
    assert board.updated_at is not None


def test_another_tenants_figures_are_not_counted(tenant, other_tenant):
    at = datetime(2026, 3, 2, 9, tzinfo=UTC)
    OrderStory(other_tenant, line("BOOK-1", 1, "10.00")).placed(at=at).confirmed()
    project()
    board = dashboard_get(tenant=tenant, now=at)
    assert (board.orders_this_month, board.pending_fulfillment, board.top_products) == (0, 0, [])


def test_the_month_rolls_over_at_the_tenants_local_midnight():
    new_york = TenantFactory(slug="nyc", timezone="America/New_York")
    # 23:30 on 31 March in New York (03:30 UTC on 1 April).
    OrderStory(new_york, line("BOOK-1", 1, "10.00")).placed(at=datetime(2026, 4, 1, 3, 30, tzinfo=UTC)).confirmed()
    project()

    with time_machine.travel(datetime(2026, 4, 1, 3, 59, tzinfo=UTC), tick=False):
        board = dashboard_get(tenant=new_york)
        assert (board.orders_this_month, board.revenue_this_month) == (1, Decimal("10.00")), "still March there"
        assert [d["date"] for d in board.daily_revenue] == [date(2026, 3, 31)]
    with time_machine.travel(datetime(2026, 4, 1, 4, 1, tzinfo=UTC), tick=False):
        board = dashboard_get(tenant=new_york)
        assert (board.orders_this_month, board.revenue_this_month) == (0, Decimal("0.00")), "April from local midnight"
        assert board.daily_revenue == []
        assert board.pending_fulfillment == 1, "not a monthly figure"
