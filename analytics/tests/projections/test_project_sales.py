"""The sales projection: order summaries, monthly and daily figures, pending, product sales."""

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from analytics.models import Generation, OrderSummary, ProductSales, TenantDay, TenantMonth, TenantTotals
from analytics.projections import SALES, generation_for, project_sales
from analytics.tests.helpers import OrderStory, line, project
from domain_events import tracking
from domain_events.bus import event_bus
from domain_events.events import OrderCancelled, OrderConfirmed
from domain_events.models import Checkpoint, StoredEvent
from tenants.tests.factories import TenantFactory

pytestmark = pytest.mark.django_db

AT = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)


def live():
    return generation_for(projection=SALES, target="live")


def month_of(tenant, month=date(2026, 3, 1)) -> TenantMonth:
    return TenantMonth.objects.get(generation=live(), tenant_id=tenant.id, month=month)


def summary_of(story: OrderStory) -> OrderSummary:
    return OrderSummary.objects.get(generation=live(), order_id=story.order_id)


def snapshot() -> dict:
    """Every read-model row, without ids, for before/after comparisons."""
    return {
        model.__name__: sorted(
            (tuple(sorted((k, str(v)) for k, v in row.items() if k != "id")) for row in model.objects.values()),
        )
        for model in (OrderSummary, TenantMonth, TenantDay, TenantTotals, ProductSales)
    }


def test_an_order_placed_confirmed_and_fulfilled_moves_through_the_figures(tenant):
    story = OrderStory(tenant, line("BOOK-1", 2, "12.50"), line("BOOK-2", 1, "7.99")).placed(at=AT)
    project()
    summary = summary_of(story)
    assert (summary.status, summary.item_count, summary.total_amount) == ("placed", 3, Decimal("32.99"))
    assert (summary.top_item_sku, summary.top_item_title) == ("BOOK-1", "Title of BOOK-1")
    assert summary.placed_on == date(2026, 3, 10)
    month = month_of(tenant)
    assert (month.orders, month.paid_orders, month.revenue) == (1, 0, Decimal("0.00"))

    story.confirmed()
    project()
    month = month_of(tenant)
    assert (month.orders, month.paid_orders, month.revenue) == (1, 1, Decimal("32.99"))
    assert TenantTotals.objects.get(generation=live(), tenant_id=tenant.id).pending_fulfillment == 1
    book = ProductSales.objects.get(generation=live(), tenant_id=tenant.id, sku="BOOK-1")
    assert (book.units, book.revenue, book.title) == (2, Decimal("25.00"), "Title of BOOK-1")
    day = TenantDay.objects.get(generation=live(), tenant_id=tenant.id, day=date(2026, 3, 10))
    assert (day.orders, day.revenue) == (1, Decimal("32.99"))

    story.fulfilled()
    project()
    summary = summary_of(story)
    assert summary.status == "fulfilled"
    assert summary.confirmed_at is not None
    assert summary.fulfilled_at is not None
    assert TenantTotals.objects.get(generation=live(), tenant_id=tenant.id).pending_fulfillment == 0
    assert month_of(tenant).revenue == Decimal("32.99")


def test_cancelling_a_confirmed_order_takes_its_money_and_units_back(tenant):
    story = OrderStory(tenant, line("BOOK-1", 2, "12.50")).placed(at=AT).confirmed()
    project()
    story.cancelled(previous_status="confirmed")
    project()
    summary = summary_of(story)
    assert (summary.status, summary.cancellation_reason) == ("cancelled", "customer_request")
    assert summary.cancelled_at is not None
    month = month_of(tenant)
    assert (month.orders, month.paid_orders, month.cancelled, month.revenue) == (1, 0, 1, Decimal("0.00"))
    assert TenantTotals.objects.get(generation=live(), tenant_id=tenant.id).pending_fulfillment == 0
    assert ProductSales.objects.get(generation=live(), sku="BOOK-1").units == 0


def test_a_declined_order_counts_as_placed_and_cancelled_and_earns_nothing(tenant):
    OrderStory(tenant).placed(at=AT).cancelled(reason="payment_declined")
    project()
    month = month_of(tenant)
    assert (month.orders, month.cancelled, month.revenue) == (1, 1, Decimal("0.00"))
    assert not ProductSales.objects.filter(units__gt=0).exists()


def test_the_month_and_day_are_the_tenants_local_ones():
    tokyo = TenantFactory(slug="tokyo", timezone="Asia/Tokyo")
    # 20:00 UTC on 31 March is 05:00 on 1 April in Tokyo.
    OrderStory(tokyo).placed(at=datetime(2026, 3, 31, 20, 0, tzinfo=UTC))
    project()
    assert month_of(tokyo, date(2026, 4, 1)).orders == 1
    assert TenantDay.objects.get(tenant_id=tokyo.id).day == date(2026, 4, 1)


def test_replaying_the_same_events_twice_changes_nothing(tenant):
    OrderStory(tenant, line("BOOK-1", 3)).placed(at=AT).confirmed().fulfilled()
    OrderStory(tenant, line("BOOK-2", 1)).placed(at=AT).confirmed().cancelled(previous_status="confirmed")
    project()
    before = snapshot()
    # Offered again: from an older checkpoint, and straight to the handler.
    tracking.reset(SALES, to="beginning")
    project()
    rows = list(StoredEvent.objects.filter(type__startswith="order.").order_by("position"))
    from domain_events.registry import registry

    events = [registry.load(r.type, r.version, r.payload, envelope=r.envelope()) for r in rows]
    with transaction.atomic():
        project_sales(
            events,
            tracking.TrackingContext(SALES, "live", 0, rows[-1].position, {r.event_id: r.position for r in rows}),
        )
    assert snapshot() == before


def test_a_confirmation_that_commits_after_the_cancellation_changes_nothing(tenant):
    """The cancellation commits first: it has the lower revision and position, so the order ends
    cancelled and the late confirmation changes nothing."""
    story = OrderStory(tenant, line("BOOK-1", 1, "10.00")).placed(at=AT)
    project()
    confirmation = OrderConfirmed(
        tenant_id=tenant.id, order_id=story.order_id, total_amount=story.total, currency="USD"
    )
    cancellation = OrderCancelled(
        tenant_id=tenant.id,
        order_id=story.order_id,
        reason="customer_request",
        previous_status="placed",
        lines=story.lines,
        total_amount=story.total,
        currency="USD",
    )
    with transaction.atomic():
        event_bus.publish(cancellation)
    with transaction.atomic():
        event_bus.publish(confirmation)
    confirmed_row = StoredEvent.objects.get(event_id=confirmation.event_id)
    cancelled_row = StoredEvent.objects.get(event_id=cancellation.event_id)
    assert cancelled_row.position < confirmed_row.position
    assert cancelled_row.revision + 1 == confirmed_row.revision
    project()
    summary = summary_of(story)
    assert summary.status == "cancelled"
    assert summary.confirmed_at is None
    assert summary.position == confirmed_row.position
    month = month_of(tenant)
    assert (month.paid_orders, month.cancelled, month.revenue) == (0, 1, Decimal("0.00"))


def test_the_live_generation_is_made_on_first_use_and_only_for_live():
    generation = live()
    assert generation == live()
    assert Generation.objects.get(pk=generation).target == "live"
    with pytest.raises(LookupError):
        generation_for(projection=SALES, target="rebuild")


def test_stock_adjustments_count_restocks_once(tenant):
    from domain_events.events import StockAdjusted

    product_id = uuid.uuid4()
    with transaction.atomic():
        event_bus.publish(
            StockAdjusted(
                tenant_id=tenant.id, product_id=product_id, sku="BOOK-9", quantity_change=5, on_hand=5, reason="restock"
            )
        )
        event_bus.publish(
            StockAdjusted(
                tenant_id=tenant.id, product_id=product_id, sku="BOOK-9", quantity_change=3, on_hand=8, reason="restock"
            )
        )
    project()
    tracking.reset(SALES, to="beginning")
    project()
    book = ProductSales.objects.get(generation=live(), sku="BOOK-9")
    assert (book.restocked, book.on_hand) == (8, 8)


def test_a_batch_costs_the_same_statements_however_many_events_it_holds(tenant):
    """A rebuild applies millions of events: nothing in a batch may cost a query per event."""
    OrderStory(tenant).placed(at=AT)
    project()

    def statements_for(orders: int) -> int:
        for i in range(orders):
            OrderStory(tenant, line(f"BOOK-{i}", 1)).placed(at=AT).confirmed().fulfilled()
        with CaptureQueriesContext(connection) as queries:
            assert tracking.catch_up(SALES, batch_size=1000) == 3 * orders
        return len(queries)

    assert statements_for(2) == statements_for(20)


def test_one_pass_of_the_projection_over_a_confirmation_takes_few_statements(tenant, django_assert_max_num_queries):
    """Under a steady load each pass applies an event or two: its fixed cost is the reader's cost.
    The head, the transaction, the checkpoint with the events and its move, the summaries, and one
    write for every table; the generation is looked up again only when something else moved the
    checkpoint."""
    story = OrderStory(tenant).placed(at=AT)
    project()
    story.confirmed()
    with django_assert_max_num_queries(6):
        assert project() == 1
    assert month_of(tenant).paid_orders == 1
    OrderStory(tenant).placed(at=AT)
    tracking.reset(SALES, to=Checkpoint.objects.get(name=SALES).position)
    with django_assert_max_num_queries(8):
        assert project() == 1
