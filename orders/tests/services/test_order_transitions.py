"""Confirm, cancel and fulfill: allowed transitions publish their event; the others are refused or ignored."""

import threading
import time
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from core.errors import ApplicationError, Conflict, NotFound
from orders.models import Order
from orders.services import order_cancel, order_cancel_if_open, order_confirm, order_fulfill
from orders.tests.factories import OrderFactory
from orders.tests.helpers import event_types_of, events_of
from tenants.tests.factories import UserFactory

CANCELLED_BY_CUSTOMER = Order.CancellationReason.CUSTOMER_REQUEST
LINES = [("BOOK-1", 2, "12.50"), ("BOOK-2", 1, "7.99")]
EXPECTED_LINES = [
    {"sku": "BOOK-1", "title": "Title of BOOK-1", "quantity": 2, "unit_price": "12.50"},
    {"sku": "BOOK-2", "title": "Title of BOOK-2", "quantity": 1, "unit_price": "7.99"},
]


@pytest.fixture
def order(tenant, customer) -> Order:
    return OrderFactory(tenant=tenant, customer=customer, lines=LINES)


def in_status(order: Order, status: str) -> Order:
    Order.objects.filter(pk=order.pk).update(
        status=status, cancellation_reason=CANCELLED_BY_CUSTOMER if status == Order.Status.CANCELLED else ""
    )
    order.refresh_from_db()
    return order


# --- confirm --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_confirm_turns_a_placed_order_confirmed_and_publishes(order, tenant):
    confirmed = order_confirm(order=order)
    assert confirmed.status == Order.Status.CONFIRMED
    order.refresh_from_db()
    assert order.status == Order.Status.CONFIRMED
    [event] = events_of(order.id)
    assert event.type == "order.confirmed"
    assert event.tenant_id == tenant.id
    assert event.payload == {"order_id": str(order.id), "total_amount": "32.99", "currency": "USD"}


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Order.Status.CONFIRMED, Order.Status.CANCELLED, Order.Status.FULFILLED])
def test_confirm_leaves_any_other_order_as_it_is(order, status):
    in_status(order, status)
    assert order_confirm(order=order).status == status
    order.refresh_from_db()
    assert order.status == status
    assert event_types_of(order.id) == []


# --- cancel ---------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Order.Status.PLACED, Order.Status.CONFIRMED])
def test_cancel_an_open_order_publishes_what_it_was_and_what_it_held(order, customer, status):
    in_status(order, status)
    cancelled = order_cancel(order=order, reason=CANCELLED_BY_CUSTOMER, by=customer)
    assert cancelled.status == Order.Status.CANCELLED
    assert cancelled.cancellation_reason == "customer_request"
    order.refresh_from_db()
    assert (order.status, order.cancellation_reason) == ("cancelled", "customer_request")
    [event] = events_of(order.id)
    assert event.type == "order.cancelled"
    assert event.payload == {
        "order_id": str(order.id),
        "reason": "customer_request",
        "previous_status": status,
        "lines": EXPECTED_LINES,
        "total_amount": "32.99",
        "currency": "USD",
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "message"),
    [
        (Order.Status.FULFILLED, "A fulfilled order cannot be cancelled."),
        (Order.Status.CANCELLED, "The order is already cancelled."),
    ],
)
def test_cancel_a_closed_order_is_a_conflict(order, customer, status, message):
    in_status(order, status)
    with pytest.raises(Conflict) as raised:
        order_cancel(order=order, reason=CANCELLED_BY_CUSTOMER, by=customer)
    assert raised.value.status_code == 409
    assert raised.value.message == message
    assert raised.value.extra == {"status": status}
    order.refresh_from_db()
    assert order.status == status
    assert event_types_of(order.id) == []


@pytest.mark.django_db
def test_staff_of_the_tenant_and_the_platform_may_cancel(tenant, staff):
    first, second = OrderFactory(tenant=tenant), OrderFactory(tenant=tenant)
    assert order_cancel(order=first, reason=CANCELLED_BY_CUSTOMER, by=staff).status == "cancelled"
    assert order_cancel(order=second, reason=Order.CancellationReason.OUT_OF_STOCK, by=None).status == "cancelled"


@pytest.mark.django_db
def test_nobody_else_may_cancel(order, tenant, other_tenant):
    another_customer = UserFactory(tenant=tenant, username="dave")
    foreign_staff = UserFactory(tenant=other_tenant, username="olga", is_staff=True)
    for stranger in (another_customer, foreign_staff):
        with pytest.raises(NotFound):
            order_cancel(order=order, reason=CANCELLED_BY_CUSTOMER, by=stranger)
    order.refresh_from_db()
    assert order.status == Order.Status.PLACED
    assert event_types_of(order.id) == []


@pytest.mark.django_db
def test_cancel_needs_one_of_the_contracts_reasons(order, customer):
    with pytest.raises(ApplicationError, match="Unknown cancellation reason"):
        order_cancel(order=order, reason="changed_my_mind", by=customer)
    assert event_types_of(order.id) == []


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Order.Status.PLACED, Order.Status.CONFIRMED])
def test_cancel_if_open_cancels_an_open_order(order, status):
    in_status(order, status)
    cancelled = order_cancel_if_open(order=order, reason=Order.CancellationReason.PAYMENT_DECLINED)
    assert (cancelled.status, cancelled.cancellation_reason) == ("cancelled", "payment_declined")
    [event] = events_of(order.id)
    assert event.payload["reason"] == "payment_declined"
    assert event.payload["previous_status"] == status


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Order.Status.CANCELLED, Order.Status.FULFILLED])
def test_cancel_if_open_leaves_a_closed_order_alone(order, status):
    in_status(order, status)
    result = order_cancel_if_open(order=order, reason=Order.CancellationReason.OUT_OF_STOCK)
    assert result.status == status
    order.refresh_from_db()
    assert order.cancellation_reason == ("customer_request" if status == Order.Status.CANCELLED else "")
    assert event_types_of(order.id) == []


# --- fulfill --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_fulfill_ships_a_confirmed_order(order):
    in_status(order, Order.Status.CONFIRMED)
    fulfilled = order_fulfill(order=order, tracking_number="  1Z999AA10123456784 ")
    order.refresh_from_db()
    assert order.status == Order.Status.FULFILLED
    assert order.tracking_number == "1Z999AA10123456784"
    assert order.shipped_at is not None
    assert fulfilled.shipped_at == order.shipped_at
    [event] = events_of(order.id)
    assert event.type == "order.fulfilled"
    assert event.payload["order_id"] == str(order.id)
    assert event.payload["tracking_number"] == "1Z999AA10123456784"
    assert event.payload["lines"] == EXPECTED_LINES
    assert event.payload["shipped_at"].startswith(order.shipped_at.isoformat()[:19])


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Order.Status.PLACED, Order.Status.CANCELLED, Order.Status.FULFILLED])
def test_fulfill_anything_but_a_confirmed_order_is_a_conflict(order, status):
    in_status(order, status)
    with pytest.raises(Conflict) as raised:
        order_fulfill(order=order, tracking_number="TRACK-1")
    assert raised.value.extra == {"status": status}
    assert f"this one is {status}" in raised.value.message
    order.refresh_from_db()
    assert order.status == status
    assert order.tracking_number == ""
    assert event_types_of(order.id) == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("tracking_number", "message"),
    [("", "A tracking number is required."), ("   ", "A tracking number is required."), ("T" * 101, "At most 100")],
)
def test_fulfill_needs_a_tracking_number(order, tracking_number, message):
    in_status(order, Order.Status.CONFIRMED)
    with pytest.raises(ApplicationError) as raised:
        order_fulfill(order=order, tracking_number=tracking_number)
    assert raised.value.status_code == 400
    assert message in raised.value.extra["tracking_number"][0]
    order.refresh_from_db()
    assert order.status == Order.Status.CONFIRMED


# --- locking --------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "transition"),
    [
        (Order.Status.PLACED, lambda o: order_confirm(order=o)),
        (Order.Status.PLACED, lambda o: order_cancel(order=o, reason=CANCELLED_BY_CUSTOMER, by=None)),
        (Order.Status.PLACED, lambda o: order_cancel_if_open(order=o, reason=CANCELLED_BY_CUSTOMER)),
        (Order.Status.CONFIRMED, lambda o: order_fulfill(order=o, tracking_number="T-1")),
    ],
    ids=["confirm", "cancel", "cancel_if_open", "fulfill"],
)
def test_every_transition_locks_the_order_row_first(order, status, transition):
    in_status(order, status)
    with CaptureQueriesContext(connection) as queries:
        transition(order)
    statements = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    assert statements[0].startswith('SELECT "orders_order"')
    assert statements[0].endswith("FOR NO KEY UPDATE")


@pytest.mark.django_db(transaction=True)
def test_a_capture_waits_for_a_concurrent_cancel_and_then_changes_nothing(tenant, customer):
    order = OrderFactory(tenant=tenant, customer=customer)
    outcome: dict[str, object] = {}

    def confirm_meanwhile() -> None:
        try:
            outcome["status"] = order_confirm(order=order).status
        finally:
            connections.close_all()

    with transaction.atomic():
        cancelled = order_cancel(order=order, reason=CANCELLED_BY_CUSTOMER, by=customer)
        thread = threading.Thread(target=confirm_meanwhile)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive(), "the confirmation did not wait for the row lock"
    thread.join(10)

    assert cancelled.status == Order.Status.CANCELLED
    assert outcome["status"] == Order.Status.CANCELLED
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED
    assert event_types_of(order.id) == ["order.cancelled"]
    assert order.total_amount == Decimal("25.00")
