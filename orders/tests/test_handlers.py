"""Reactions: payment.captured confirms, inventory.reservation_failed and payment.failed cancel."""

import uuid
from decimal import Decimal

import pytest
from django.db import transaction

from domain_events.bus import Mode, event_bus
from domain_events.events import InventoryReservationFailed, PaymentCaptured, PaymentFailed, StockShortage
from domain_events.models import Delivery
from orders import handlers
from orders.models import Order
from orders.tests.factories import OrderFactory
from orders.tests.helpers import event_types_of, events_of


def captured(order: Order) -> PaymentCaptured:
    return PaymentCaptured(
        tenant_id=order.tenant_id,
        order_id=order.id,
        payment_id=uuid.uuid4(),
        amount=order.total_amount,
        currency=order.currency,
        provider_reference="sim_ch_1",
    )


def declined(order: Order) -> PaymentFailed:
    return PaymentFailed(
        tenant_id=order.tenant_id,
        order_id=order.id,
        payment_id=uuid.uuid4(),
        amount=order.total_amount,
        currency=order.currency,
        reason="card_declined",
    )


def out_of_stock(order: Order) -> InventoryReservationFailed:
    return InventoryReservationFailed(
        tenant_id=order.tenant_id,
        order_id=order.id,
        shortages=(StockShortage(sku="BOOK-1", requested=2, available=0),),
    )


def publish(event) -> None:
    with transaction.atomic():
        event_bus.publish(event)


@pytest.mark.parametrize(
    ("event_type", "name", "handler"),
    [
        (PaymentCaptured, "orders.confirm_order", handlers.confirm_order),
        (InventoryReservationFailed, "orders.cancel_order_out_of_stock", handlers.cancel_order_out_of_stock),
        (PaymentFailed, "orders.cancel_order_payment_declined", handlers.cancel_order_payment_declined),
    ],
)
def test_the_reactions_are_subscribed_on_commit(event_type, name, handler):
    subscription = event_bus.subscription(name)
    assert subscription is not None
    assert subscription.handler is handler
    assert subscription.mode is Mode.ON_COMMIT
    assert subscription.event_types == (event_type,)


@pytest.mark.django_db(transaction=True)
def test_a_captured_payment_confirms_the_order_through_the_bus(tenant):
    order = OrderFactory(tenant=tenant)
    publish(captured(order))
    order.refresh_from_db()
    assert order.status == Order.Status.CONFIRMED
    delivery = Delivery.objects.get(handler="orders.confirm_order", aggregate_id=order.id)
    assert delivery.status == Delivery.Status.SUCCEEDED
    [confirmed] = events_of(order.id, "order.confirmed")
    assert confirmed.payload["total_amount"] == "25.00"


@pytest.mark.django_db(transaction=True)
def test_a_declined_payment_cancels_the_order_through_the_bus(tenant):
    order = OrderFactory(tenant=tenant)
    event = declined(order)
    publish(event)
    order.refresh_from_db()
    assert (order.status, order.cancellation_reason) == ("cancelled", "payment_declined")
    [cancelled] = events_of(order.id, "order.cancelled")
    assert cancelled.payload["reason"] == "payment_declined"
    assert cancelled.payload["previous_status"] == "placed"
    assert cancelled.causation_id == event.event_id  # traceable to the failure that caused it


@pytest.mark.django_db(transaction=True)
def test_a_failed_reservation_cancels_the_order_through_the_bus(tenant):
    order = OrderFactory(tenant=tenant)
    publish(out_of_stock(order))
    order.refresh_from_db()
    assert (order.status, order.cancellation_reason) == ("cancelled", "out_of_stock")
    assert events_of(order.id, "order.cancelled")[0].payload["reason"] == "out_of_stock"


@pytest.mark.django_db
def test_a_capture_after_a_cancellation_does_not_confirm(tenant):
    order = OrderFactory(tenant=tenant, status=Order.Status.CANCELLED, cancellation_reason="customer_request")
    handlers.confirm_order(captured(order))
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED
    assert event_types_of(order.id) == []


@pytest.mark.django_db
@pytest.mark.parametrize("make_event", [declined, out_of_stock], ids=["payment_failed", "reservation_failed"])
@pytest.mark.parametrize(
    ("status", "reason"), [(Order.Status.FULFILLED, ""), (Order.Status.CANCELLED, "customer_request")]
)
def test_failures_leave_a_closed_order_alone(tenant, make_event, status, reason):
    order = OrderFactory(tenant=tenant, status=status, cancellation_reason=reason)
    handler = handlers.cancel_order_payment_declined if make_event is declined else handlers.cancel_order_out_of_stock
    handler(make_event(order))
    order.refresh_from_db()
    assert (order.status, order.cancellation_reason) == (status, reason)
    assert event_types_of(order.id) == []


@pytest.mark.django_db
def test_a_redelivered_capture_confirms_once(tenant):
    order = OrderFactory(tenant=tenant)
    event = captured(order)
    handlers.confirm_order(event)
    handlers.confirm_order(event)
    assert event_types_of(order.id) == ["order.confirmed"]


@pytest.mark.django_db
def test_an_event_for_another_tenants_order_finds_nothing(tenant, other_tenant):
    order = OrderFactory(tenant=tenant)
    forged = PaymentCaptured(
        tenant_id=other_tenant.id,
        order_id=order.id,
        payment_id=uuid.uuid4(),
        amount=Decimal("25.00"),
        currency="USD",
        provider_reference="x",
    )
    with pytest.raises(Order.DoesNotExist):
        handlers.confirm_order(forged)
    order.refresh_from_db()
    assert order.status == Order.Status.PLACED
