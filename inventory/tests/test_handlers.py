"""Inventory reacts to the order's events after they commit, and answers the catalog query."""

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import transaction

from domain_events.bus import Mode, event_bus
from domain_events.events import DomainEvent, OrderCancelled, OrderFulfilled, OrderLine, OrderPlaced
from domain_events.models import Delivery
from domain_events.queries import ProductQuote, QuoteProducts
from inventory import handlers
from inventory.models import Reservation
from inventory.tests.factories import ProductFactory, order_line
from inventory.tests.helpers import events_of

pytestmark = pytest.mark.django_db(transaction=True)


def publish(event: DomainEvent) -> DomainEvent:
    with transaction.atomic():
        return event_bus.publish(event)


def placed(tenant, order_id, lines: tuple[OrderLine, ...]) -> OrderPlaced:
    total = sum((line.unit_price * line.quantity for line in lines), Decimal("0.00"))
    return OrderPlaced(
        tenant_id=tenant.pk,
        order_id=order_id,
        customer_id=uuid.uuid4(),
        lines=lines,
        total_amount=total,
        currency="USD",
        payment_token="tok_visa",
    )


def cancelled(tenant, order_id, lines: tuple[OrderLine, ...]) -> OrderCancelled:
    return OrderCancelled(
        tenant_id=tenant.pk,
        order_id=order_id,
        reason="customer_request",
        previous_status="placed",
        lines=lines,
        total_amount=Decimal("10.00"),
        currency="USD",
    )


def delivery_status(event: DomainEvent, handler: str) -> str:
    return Delivery.objects.get(stored_event__event_id=event.event_id, handler=handler).status


def test_the_handlers_are_subscribed_on_commit():
    for name, event_type in [
        ("inventory.reserve_stock_for_order", OrderPlaced),
        ("inventory.release_stock_for_cancelled_order", OrderCancelled),
        ("inventory.ship_stock_for_fulfilled_order", OrderFulfilled),
    ]:
        subscription = event_bus.subscription(name)
        assert subscription is not None, name
        assert subscription.mode is Mode.ON_COMMIT
        assert subscription.event_types == (event_type,)


def test_an_order_placed_reserves_its_stock_right_after_the_commit(tenant):
    dune = ProductFactory(tenant=tenant, on_hand=3)
    order_id = uuid.uuid4()
    event = publish(placed(tenant, order_id, (order_line(dune, 2),)))

    assert delivery_status(event, "inventory.reserve_stock_for_order") == Delivery.Status.SUCCEEDED
    dune.refresh_from_db()
    assert dune.reserved == 2
    [reserved] = events_of("inventory.reserved", order_id=str(order_id))
    # What the handler published traces back to the order that caused it.
    assert reserved.causation_id == event.event_id
    assert reserved.correlation_id == event.correlation_id


def test_an_order_that_cannot_be_served_gets_reservation_failed(tenant):
    dune = ProductFactory(tenant=tenant, on_hand=1)
    order_id = uuid.uuid4()
    publish(placed(tenant, order_id, (order_line(dune, 2),)))

    [failed] = events_of("inventory.reservation_failed", order_id=str(order_id))
    assert failed.payload["shortages"] == [{"sku": dune.sku, "requested": 2, "available": 1}]
    dune.refresh_from_db()
    assert dune.reserved == 0


def test_a_cancelled_order_gives_its_stock_back(tenant):
    dune = ProductFactory(tenant=tenant, on_hand=3)
    order_id = uuid.uuid4()
    lines = (order_line(dune, 2),)
    publish(placed(tenant, order_id, lines))
    event = publish(cancelled(tenant, order_id, lines))

    assert delivery_status(event, "inventory.release_stock_for_cancelled_order") == Delivery.Status.SUCCEEDED
    dune.refresh_from_db()
    assert (dune.on_hand, dune.reserved) == (3, 0)
    assert Reservation.objects.get(order_id=order_id).status == Reservation.Status.RELEASED


def test_an_order_cancelled_before_its_reservation_is_never_reserved(tenant):
    dune = ProductFactory(tenant=tenant, on_hand=3)
    order_id = uuid.uuid4()
    lines = (order_line(dune, 2),)
    publish(cancelled(tenant, order_id, lines))
    late = publish(placed(tenant, order_id, lines))

    assert delivery_status(late, "inventory.reserve_stock_for_order") == Delivery.Status.SUCCEEDED
    dune.refresh_from_db()
    assert dune.reserved == 0
    assert not events_of("inventory.reserved", order_id=str(order_id))


def test_a_fulfilled_order_ships_its_stock(tenant):
    dune = ProductFactory(tenant=tenant, on_hand=3)
    order_id = uuid.uuid4()
    lines = (order_line(dune, 2),)
    publish(placed(tenant, order_id, lines))
    event = publish(
        OrderFulfilled(
            tenant_id=tenant.pk,
            order_id=order_id,
            tracking_number="1Z999",
            shipped_at=datetime.now(tz=UTC),
            lines=lines,
        )
    )

    assert delivery_status(event, "inventory.ship_stock_for_fulfilled_order") == Delivery.Status.SUCCEEDED
    dune.refresh_from_db()
    assert (dune.on_hand, dune.reserved) == (1, 0)
    assert Reservation.objects.get(order_id=order_id).status == Reservation.Status.SHIPPED


def test_the_same_order_placed_handled_twice_reserves_once(tenant):
    dune = ProductFactory(tenant=tenant, on_hand=3)
    event = placed(tenant, uuid.uuid4(), (order_line(dune, 2),))
    for _ in range(2):
        with transaction.atomic():
            handlers.reserve_stock_for_order(event)
    dune.refresh_from_db()
    assert dune.reserved == 2
    assert len(events_of("inventory.reserved")) == 1


def test_quote_products_answers_the_tenants_known_skus(tenant, other_tenant):
    ProductFactory(tenant=tenant, sku="DUNE", title="Dune", price=Decimal("19.99"))
    ProductFactory(tenant=tenant, sku="SICP", title="SICP", price=Decimal("59.97"))
    ProductFactory(tenant=other_tenant, sku="THEIRS", title="Theirs", price=Decimal("1.00"))

    quotes = event_bus.ask(QuoteProducts(tenant_id=tenant.pk, skus=("DUNE", "SICP", "THEIRS", "GHOST")))

    assert quotes == {
        "DUNE": ProductQuote(sku="DUNE", title="Dune", unit_price=Decimal("19.99")),
        "SICP": ProductQuote(sku="SICP", title="SICP", unit_price=Decimal("59.97")),
    }
