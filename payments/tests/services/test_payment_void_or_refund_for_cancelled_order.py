import uuid
from decimal import Decimal

import pytest

from payments.gateways import GatewayTimeout, SimulatedGateway
from payments.models import Payment, SimulatedCharge
from payments.services import (
    PaymentCaptureUnsettled,
    payment_capture_for_order,
    payment_register_for_order,
    payment_void_or_refund_for_cancelled_order,
)
from payments.tests.factories import PaymentFactory
from payments.tests.helpers import published

pytestmark = pytest.mark.django_db(transaction=True)


def cancel(tenant_id, order_id, gateway: SimulatedGateway, key: str | None = None) -> Payment:
    return payment_void_or_refund_for_cancelled_order(
        tenant_id=tenant_id,
        order_id=order_id,
        amount=Decimal("59.97"),
        currency="USD",
        idempotency_key=key or str(uuid.uuid4()),
        gateway=gateway,
    )


def captured_payment(tenant, gateway: SimulatedGateway) -> Payment:
    payment = PaymentFactory(tenant=tenant)
    return payment_capture_for_order(
        tenant_id=tenant.id, order_id=payment.order_id, idempotency_key=str(uuid.uuid4()), gateway=gateway
    )


def test_a_pending_payment_is_voided_without_calling_the_provider(tenant, gateway):
    payment = PaymentFactory(tenant=tenant)
    cancel(tenant.id, payment.order_id, gateway)
    payment.refresh_from_db()
    assert payment.status == Payment.Status.VOIDED
    assert not SimulatedCharge.objects.exists()
    assert not published("payment.refunded", payment.order_id)


def test_cancel_before_register_leaves_a_tombstone_that_a_late_register_and_capture_respect(tenant, gateway):
    order_id = uuid.uuid4()
    tombstone = cancel(tenant.id, order_id, gateway)
    assert tombstone.status == Payment.Status.VOIDED
    assert tombstone.amount == Decimal("59.97")

    payment_register_for_order(
        tenant_id=tenant.id, order_id=order_id, amount=Decimal("59.97"), currency="USD", payment_token="tok_visa"
    )
    payment_capture_for_order(tenant_id=tenant.id, order_id=order_id, idempotency_key="late", gateway=gateway)

    payment = Payment.objects.get(order_id=order_id)
    assert payment.status == Payment.Status.VOIDED
    assert not SimulatedCharge.objects.exists()
    assert not published("payment.captured", order_id)


def test_a_captured_payment_is_refunded_and_payment_refunded_published(tenant, gateway):
    payment = captured_payment(tenant, gateway)
    cancelled_event_id = str(uuid.uuid4())
    cancel(tenant.id, payment.order_id, gateway, key=cancelled_event_id)

    payment.refresh_from_db()
    assert payment.status == Payment.Status.REFUNDED
    assert payment.refunded_at is not None
    refund = SimulatedCharge.objects.get(kind="refund")
    assert refund.idempotency_key == cancelled_event_id
    assert refund.refunded_reference == payment.provider_reference
    assert refund.amount == payment.amount
    [event] = published("payment.refunded", payment.order_id)
    assert event.payload["amount"] == "59.97"
    assert event.payload["provider_reference"] == refund.reference == payment.refund_reference


def test_a_refund_happens_once_however_often_the_cancellation_is_handled(tenant, gateway):
    payment = captured_payment(tenant, gateway)
    key = str(uuid.uuid4())
    cancel(tenant.id, payment.order_id, gateway, key=key)
    cancel(tenant.id, payment.order_id, gateway, key=key)
    cancel(tenant.id, payment.order_id, gateway)
    assert SimulatedCharge.objects.filter(kind="refund").count() == 1
    assert len(published("payment.refunded", payment.order_id)) == 1


def test_a_lost_refund_answer_is_retried_without_refunding_twice(tenant, gateway):
    payment = captured_payment(tenant, gateway)
    losing = SimulatedGateway(delay=0, lost_responses=1)
    key = str(uuid.uuid4())
    with pytest.raises(GatewayTimeout):
        cancel(tenant.id, payment.order_id, losing, key=key)
    payment.refresh_from_db()
    assert payment.status == Payment.Status.CAPTURED

    cancel(tenant.id, payment.order_id, losing, key=key)
    payment.refresh_from_db()
    assert payment.status == Payment.Status.REFUNDED
    assert SimulatedCharge.objects.filter(kind="refund").count() == 1


def test_a_declined_refund_keeps_the_payment_captured_with_the_reason(tenant, gateway):
    payment = captured_payment(tenant, gateway)
    Payment.objects.filter(pk=payment.pk).update(provider_reference="sim_ch_unknown")
    cancel(tenant.id, payment.order_id, gateway)
    payment.refresh_from_db()
    assert payment.status == Payment.Status.CAPTURED
    assert payment.failure_reason == "refund declined: unknown charge"
    assert not published("payment.refunded", payment.order_id)


@pytest.mark.parametrize("status", [Payment.Status.DECLINED, Payment.Status.VOIDED, Payment.Status.REFUNDED])
def test_settled_payments_are_left_alone(tenant, gateway, status):
    payment = PaymentFactory(tenant=tenant, status=status)
    cancel(tenant.id, payment.order_id, gateway)
    payment.refresh_from_db()
    assert payment.status == status
    assert not SimulatedCharge.objects.exists()
    assert not published("payment.refunded", payment.order_id)


def test_a_cancellation_waits_for_a_capture_whose_answer_was_lost_and_then_refunds_it(tenant, gateway):
    """The provider charged but its answer was lost: only the capture's retry can tell, so the
    cancellation is retried until the capture is recorded, and then gives the money back."""
    payment = PaymentFactory(tenant=tenant)
    capture_key = str(uuid.uuid4())
    with pytest.raises(GatewayTimeout):
        payment_capture_for_order(
            tenant_id=tenant.id,
            order_id=payment.order_id,
            idempotency_key=capture_key,
            gateway=SimulatedGateway(delay=0, lost_responses=1),
        )
    cancel_key = str(uuid.uuid4())
    with pytest.raises(PaymentCaptureUnsettled):
        cancel(tenant.id, payment.order_id, gateway, key=cancel_key)
    payment.refresh_from_db()
    assert payment.status == Payment.Status.PENDING

    payment_capture_for_order(tenant_id=tenant.id, order_id=payment.order_id, idempotency_key="retry", gateway=gateway)
    cancel(tenant.id, payment.order_id, gateway, key=cancel_key)
    payment.refresh_from_db()
    assert payment.status == Payment.Status.REFUNDED
    assert sorted(SimulatedCharge.objects.values_list("kind", "idempotency_key")) == [
        ("capture", capture_key),
        ("refund", cancel_key),
    ]
    assert len(published("payment.captured", payment.order_id)) == 1
    assert len(published("payment.refunded", payment.order_id)) == 1
