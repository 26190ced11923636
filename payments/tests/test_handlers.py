"""The handlers, delivered through the bus: subscriptions, redelivery, retries after lost answers."""

import uuid
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.db import transaction
from django.utils import timezone

from domain_events.bus import Mode, event_bus
from domain_events.events import InventoryReserved, OrderCancelled, OrderLine, OrderPlaced
from domain_events.models import Delivery
from payments.models import Payment, SimulatedCharge
from payments.tests.factories import PaymentFactory
from payments.tests.helpers import published, run_deliveries

pytestmark = pytest.mark.django_db(transaction=True)

CAPTURE = "payments.capture_payment_for_order"
REGISTER = "payments.register_payment_for_order"
SETTLE = "payments.void_or_refund_cancelled_order"

LINES = (OrderLine(sku="978-0", title="Dune", quantity=3, unit_price=Decimal("19.99")),)


def place(tenant, order_id: uuid.UUID, card: str = "tok_visa") -> OrderPlaced:
    with transaction.atomic():
        return event_bus.publish(
            OrderPlaced(
                tenant_id=tenant.id,
                order_id=order_id,
                customer_id=uuid.uuid4(),
                lines=LINES,
                total_amount=Decimal("59.97"),
                currency="USD",
                payment_token=card,
            )
        )


def reserve(tenant, order_id: uuid.UUID) -> InventoryReserved:
    with transaction.atomic():
        return event_bus.publish(InventoryReserved(tenant_id=tenant.id, order_id=order_id, lines=LINES))


def cancel(tenant, order_id: uuid.UUID, previous_status: str = "placed") -> OrderCancelled:
    with transaction.atomic():
        return event_bus.publish(
            OrderCancelled(
                tenant_id=tenant.id,
                order_id=order_id,
                reason="customer_request",
                previous_status=previous_status,
                lines=LINES,
                total_amount=Decimal("59.97"),
                currency="USD",
            )
        )


def delivery(event, handler: str) -> Delivery:
    return Delivery.objects.get(stored_event__event_id=event.event_id, handler=handler)


def test_subscriptions_register_on_commit_and_capture_and_settle_in_workers():
    register = event_bus.subscription(REGISTER)
    capture = event_bus.subscription(CAPTURE)
    settle = event_bus.subscription(SETTLE)
    assert (register.mode, register.event_types) == (Mode.ON_COMMIT, (OrderPlaced,))
    assert (capture.mode, capture.queue, capture.event_types) == (Mode.CELERY, "payments", (InventoryReserved,))
    assert (settle.mode, settle.queue, settle.event_types) == (Mode.CELERY, "payments", (OrderCancelled,))


def test_a_placed_order_registers_its_payment_right_after_the_commit(tenant):
    order_id = uuid.uuid4()
    event = place(tenant, order_id)
    payment = Payment.objects.get(order_id=order_id)
    assert (payment.status, payment.amount, payment.payment_token) == ("pending", Decimal("59.97"), "tok_visa")
    assert delivery(event, REGISTER).status == Delivery.Status.SUCCEEDED


def test_capture_through_the_bus_carries_the_reservation_as_cause(tenant, no_fast_path):
    payment = PaymentFactory(tenant=tenant)
    event = reserve(tenant, payment.order_id)
    assert run_deliveries(CAPTURE).succeeded == 1

    payment.refresh_from_db()
    assert payment.status == Payment.Status.CAPTURED
    [captured] = published("payment.captured", payment.order_id)
    assert captured.causation_id == event.event_id
    assert captured.correlation_id == event.correlation_id
    assert SimulatedCharge.objects.get().idempotency_key == str(event.event_id)


def test_a_forced_redelivery_of_the_capture_never_captures_twice(tenant, no_fast_path):
    payment = PaymentFactory(tenant=tenant)
    event = reserve(tenant, payment.order_id)
    run_deliveries(CAPTURE)
    # The delivery record forgets that it ran (as if its commit had been lost) and runs again.
    Delivery.objects.filter(pk=delivery(event, CAPTURE).pk).update(
        status=Delivery.Status.PENDING, next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    assert run_deliveries(CAPTURE).succeeded == 1

    assert delivery(event, CAPTURE).status == Delivery.Status.SUCCEEDED
    assert SimulatedCharge.objects.count() == 1
    assert len(published("payment.captured", payment.order_id)) == 1


def test_a_lost_answer_fails_the_delivery_and_its_retry_captures_once(tenant, no_fast_path, settings):
    settings.PAYMENT_GATEWAY_LOST_RESPONSES = 1
    payment = PaymentFactory(tenant=tenant)
    event = reserve(tenant, payment.order_id)

    assert run_deliveries(CAPTURE).failed == 1
    failed = delivery(event, CAPTURE)
    assert failed.status == Delivery.Status.FAILED
    assert "GatewayTimeout" in failed.last_error
    payment.refresh_from_db()
    assert payment.status == Payment.Status.PENDING
    assert SimulatedCharge.objects.count() == 1  # charged, though nobody heard the answer

    assert run_deliveries(CAPTURE).succeeded == 1
    payment.refresh_from_db()
    assert payment.status == Payment.Status.CAPTURED
    charge = SimulatedCharge.objects.get()
    assert charge.requests == 2
    assert charge.reference == payment.provider_reference
    assert len(published("payment.captured", payment.order_id)) == 1


def test_a_reservation_before_the_registration_is_retried_until_the_payment_exists(tenant, no_fast_path):
    order_id = uuid.uuid4()
    event = reserve(tenant, order_id)
    assert run_deliveries(CAPTURE).failed == 1
    assert "no payment is registered" in delivery(event, CAPTURE).last_error

    place(tenant, order_id)
    run_deliveries(REGISTER)
    assert run_deliveries(CAPTURE).succeeded == 1
    assert Payment.objects.get(order_id=order_id).status == Payment.Status.CAPTURED


def test_cancel_before_register_leaves_a_tombstone_the_late_events_respect(tenant, no_fast_path):
    order_id = uuid.uuid4()
    cancel(tenant, order_id)
    run_deliveries(SETTLE)
    place(tenant, order_id)
    run_deliveries(REGISTER)
    reserve(tenant, order_id)
    run_deliveries(CAPTURE)

    assert Payment.objects.get(order_id=order_id).status == Payment.Status.VOIDED
    assert not SimulatedCharge.objects.exists()
    assert not published("payment.captured", order_id)


def test_a_cancelled_captured_order_is_refunded_through_the_bus(tenant, no_fast_path):
    payment = PaymentFactory(tenant=tenant)
    reserve(tenant, payment.order_id)
    run_deliveries(CAPTURE)
    event = cancel(tenant, payment.order_id, previous_status="confirmed")
    assert run_deliveries(SETTLE).succeeded == 1

    payment.refresh_from_db()
    assert payment.status == Payment.Status.REFUNDED
    [refunded] = published("payment.refunded", payment.order_id)
    assert refunded.causation_id == event.event_id
    assert SimulatedCharge.objects.get(kind="refund").idempotency_key == str(event.event_id)


def test_an_order_of_an_unknown_tenant_fails_only_its_own_delivery(no_fast_path):
    event = place(SimpleNamespace(id=uuid.uuid4()), uuid.uuid4())
    report = run_deliveries(REGISTER)
    assert report.failed == 1
    assert "foreign key" in delivery(event, REGISTER).last_error.lower()
    assert not Payment.objects.exists()
