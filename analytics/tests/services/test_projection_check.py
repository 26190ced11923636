"""Checking a projection: scratch tables compared with the live read models."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from analytics.models import Generation, OrderSummary, TenantMonth
from analytics.projections import SALES
from analytics.services import projection_check
from analytics.tests.helpers import OrderStory, line, project
from domain_events.models import Checkpoint

pytestmark = pytest.mark.django_db

AT = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)


def test_equal_read_models_show_no_difference_and_the_scratch_tables_are_dropped(tenant):
    OrderStory(tenant, line("BOOK-1", 2, "12.50")).placed(at=AT).confirmed().fulfilled()
    project()
    result = projection_check(name=SALES)
    assert result.differences == []
    assert result.lag.positions == 0
    assert list(Generation.objects.values_list("target", flat=True)) == ["live"]
    assert not Checkpoint.objects.filter(name=f"{SALES}@check").exists()


def test_each_drifted_value_and_missing_row_is_named(tenant):
    story = OrderStory(tenant, line("BOOK-1", 1, "10.00")).placed(at=AT).confirmed()
    project()
    TenantMonth.objects.update(revenue=Decimal("11.00"))
    OrderSummary.objects.filter(order_id=story.order_id).delete()

    result = projection_check(name=SALES)

    found = {(d.table, d.field): (d.live, d.rebuilt) for d in result.differences}
    assert found[("analytics_tenantmonth", "revenue")] == (Decimal("11.00"), Decimal("10.00"))
    assert found[("analytics_ordersummary", "(row)")] == ("missing", "present")
    [month] = [d for d in result.differences if d.table == "analytics_tenantmonth"]
    assert month.key["tenant_id"] == tenant.id


def test_the_check_brings_a_lagging_live_projection_to_the_head_first_and_reports_the_lag(tenant):
    OrderStory(tenant).placed(at=AT)
    project()
    OrderStory(tenant).placed(at=AT)

    result = projection_check(name=SALES)
    assert result.lag.positions >= 1
    assert result.differences == []
