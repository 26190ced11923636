"""The dashboard's chart: each of the last 30 local days, zeros included, oldest first, in one query."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics.selectors import daily_revenue_for
from analytics.tests.helpers import OrderStory, line, project
from tenants.tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


def test_every_day_of_the_last_30_oldest_first_with_the_days_that_sold_nothing_as_zeros():
    tenant = TenantFactory(timezone="America/New_York")
    now = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
    # 02:00 UTC on the 10th is still the 9th in New York.
    OrderStory(tenant, line("BOOK-1", 2, "10.00")).placed(at=datetime(2026, 3, 10, 2, tzinfo=UTC)).confirmed()
    OrderStory(tenant, line("BOOK-2", 1, "5.00")).placed(at=datetime(2026, 3, 20, 9, tzinfo=UTC)).confirmed()
    OrderStory(tenant, line("BOOK-3", 1, "7.00")).placed(at=datetime(2026, 2, 1, 9, tzinfo=UTC)).confirmed()
    project()

    with CaptureQueriesContext(connection) as queries:
        days = daily_revenue_for(tenant=tenant, days=30, now=now)

    assert len(queries) == 1
    assert len(days) == 30
    assert (days[0]["date"], days[-1]["date"]) == (date(2026, 2, 19), date(2026, 3, 20))
    sold = {d["date"]: (d["orders"], d["revenue"]) for d in days if d["orders"]}
    assert sold == {date(2026, 3, 9): (1, Decimal("20.00")), date(2026, 3, 20): (1, Decimal("5.00"))}
    assert days[1] == {"date": date(2026, 2, 20), "orders": 0, "revenue": Decimal("0.00")}


def test_another_tenants_days_are_not_counted():
    tenant, other = TenantFactory(), TenantFactory()
    OrderStory(other, line("BOOK-1", 1, "10.00")).placed().confirmed()
    project()
    assert sum(d["revenue"] for d in daily_revenue_for(tenant=tenant)) == Decimal("0.00")
    assert sum(d["revenue"] for d in daily_revenue_for(tenant=other)) == Decimal("10.00")
