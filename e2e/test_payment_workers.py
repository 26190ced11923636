"""End to end with real processes: a Celery worker captures and refunds, a relay re-sends retries."""

import uuid
from decimal import Decimal

import pytest
from django.db import transaction

from domain_events.bus import event_bus
from domain_events.events import InventoryReserved, OrderCancelled, OrderLine
from domain_events.models import Delivery
from domain_events.testing import wait_until
from e2e.helpers import published
from payments.models import Payment, SimulatedCharge
from payments.services import payment_register_for_order

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LINES = (OrderLine(sku="978-1", title="Emma", quantity=2, unit_price=Decimal("12.50")),)


def registered_payment(tenant) -> Payment:
    return payment_register_for_order(
        tenant_id=tenant.id, order_id=uuid.uuid4(), amount=Decimal("25.00"), currency="USD", payment_token="tok_visa"
    )


def reserve(payment: Payment) -> InventoryReserved:
    with transaction.atomic():
        return event_bus.publish(InventoryReserved(tenant_id=payment.tenant_id, order_id=payment.order_id, lines=LINES))


def status_of(payment: Payment) -> str:
    return Payment.objects.values_list("status", flat=True).get(pk=payment.pk)


def test_a_worker_captures_the_payment_of_a_reserved_order(processes, tenant):
    processes.worker()
    payment = registered_payment(tenant)
    event = reserve(payment)

    wait_until(lambda: status_of(payment) == Payment.Status.CAPTURED, timeout=30, what="the capture")
    charge = SimulatedCharge.objects.get()
    assert charge.idempotency_key == str(event.event_id)
    assert charge.amount == Decimal("25.00")
    [captured] = published("payment.captured", payment.order_id)
    assert captured.causation_id == event.event_id


def test_a_lost_answer_is_retried_by_the_relay_and_charges_exactly_once(processes, tenant):
    processes.worker(PAYMENT_GATEWAY_LOST_RESPONSES="1")
    processes.relay()
    payment = registered_payment(tenant)
    event = reserve(payment)

    wait_until(lambda: status_of(payment) == Payment.Status.CAPTURED, timeout=45, what="the retried capture")
    delivery = Delivery.objects.get(stored_event__event_id=event.event_id, handler="payments.capture_payment_for_order")
    assert delivery.status == Delivery.Status.SUCCEEDED
    assert delivery.attempts == 2  # the first answer was lost, the retry found the charge
    charge = SimulatedCharge.objects.get()
    assert charge.requests == 2
    payment.refresh_from_db()
    assert payment.provider_reference == charge.reference
    assert len(published("payment.captured", payment.order_id)) == 1


def test_a_worker_refunds_a_cancelled_captured_order(processes, tenant):
    processes.worker()
    payment = registered_payment(tenant)
    reserve(payment)
    wait_until(lambda: status_of(payment) == Payment.Status.CAPTURED, timeout=30, what="the capture")

    with transaction.atomic():
        event_bus.publish(
            OrderCancelled(
                tenant_id=tenant.id,
                order_id=payment.order_id,
                reason="customer_request",
                previous_status="confirmed",
                lines=LINES,
                total_amount=Decimal("25.00"),
                currency="USD",
            )
        )
    wait_until(lambda: status_of(payment) == Payment.Status.REFUNDED, timeout=30, what="the refund")
    assert SimulatedCharge.objects.filter(kind="refund").count() == 1
    assert len(published("payment.refunded", payment.order_id)) == 1
