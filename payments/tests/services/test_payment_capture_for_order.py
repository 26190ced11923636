import threading
import uuid
from decimal import Decimal

import pytest
from django.db import connection

from domain_events.context import traced
from payments import sql
from payments.gateways import GatewayTimeout, SimulatedGateway
from payments.models import Payment, SimulatedCharge
from payments.services import PaymentNotRegistered, payment_capture_for_order
from payments.tests.factories import PaymentFactory
from payments.tests.helpers import published

pytestmark = pytest.mark.django_db(transaction=True)


def capture(payment: Payment, gateway: SimulatedGateway, key: str | None = None) -> Payment:
    return payment_capture_for_order(
        tenant_id=payment.tenant_id,
        order_id=payment.order_id,
        idempotency_key=key or str(uuid.uuid4()),
        gateway=gateway,
    )


def test_capture_publishes_payment_captured_with_the_amount_and_the_causing_event(tenant, gateway):
    payment = PaymentFactory(tenant=tenant, amount=Decimal("123.45"))
    reserved_event_id = uuid.uuid4()
    with traced("checkout-1", causation_id=reserved_event_id):
        capture(payment, gateway, key=str(reserved_event_id))

    payment.refresh_from_db()
    assert payment.status == Payment.Status.CAPTURED
    assert payment.captured_at is not None
    [event] = published("payment.captured", payment.order_id)
    assert event.payload["amount"] == "123.45"
    assert event.payload["currency"] == "USD"
    assert event.payload["payment_id"] == str(payment.id)
    assert event.payload["provider_reference"] == payment.provider_reference
    assert event.causation_id == reserved_event_id
    assert event.correlation_id == "checkout-1"
    assert event.tenant_id == tenant.id
    charge = SimulatedCharge.objects.get()
    assert (charge.idempotency_key, charge.reference) == (str(reserved_event_id), payment.provider_reference)


def test_a_declined_card_publishes_payment_failed_with_the_reason(tenant, gateway):
    payment = PaymentFactory(tenant=tenant, payment_token="tok_chargeDeclined")
    capture(payment, gateway)
    payment.refresh_from_db()
    assert payment.status == Payment.Status.DECLINED
    assert payment.failure_reason == "card declined"
    [event] = published("payment.failed", payment.order_id)
    assert event.payload["reason"] == "card declined"
    assert event.payload["amount"] == "59.97"
    assert not published("payment.captured", payment.order_id)


def test_capturing_the_same_event_twice_charges_and_publishes_once(tenant, gateway):
    payment = PaymentFactory(tenant=tenant)
    key = str(uuid.uuid4())
    capture(payment, gateway, key=key)
    capture(payment, gateway, key=key)
    assert SimulatedCharge.objects.count() == 1
    assert len(published("payment.captured", payment.order_id)) == 1


def test_a_second_reservation_event_does_not_capture_again(tenant, gateway):
    payment = PaymentFactory(tenant=tenant)
    capture(payment, gateway)
    capture(payment, gateway)  # another event, so another idempotency key
    assert SimulatedCharge.objects.count() == 1
    assert len(published("payment.captured", payment.order_id)) == 1


@pytest.mark.parametrize("status", [Payment.Status.VOIDED, Payment.Status.DECLINED, Payment.Status.REFUNDED])
def test_capture_is_skipped_unless_pending(tenant, gateway, status):
    payment = PaymentFactory(tenant=tenant, status=status)
    capture(payment, gateway)
    payment.refresh_from_db()
    assert payment.status == status
    assert not SimulatedCharge.objects.exists()
    assert not published("payment.captured", payment.order_id)
    assert not published("payment.failed", payment.order_id)


def test_capture_before_registration_fails_loudly_so_it_is_retried(tenant, gateway):
    with pytest.raises(PaymentNotRegistered):
        payment_capture_for_order(tenant_id=tenant.id, order_id=uuid.uuid4(), idempotency_key="k", gateway=gateway)
    assert not SimulatedCharge.objects.exists()


def test_another_tenants_payment_is_not_captured(tenant, other_tenant, gateway):
    payment = PaymentFactory(tenant=other_tenant)
    with pytest.raises(PaymentNotRegistered):
        payment_capture_for_order(tenant_id=tenant.id, order_id=payment.order_id, idempotency_key="k", gateway=gateway)
    payment.refresh_from_db()
    assert payment.status == Payment.Status.PENDING
    assert payment.capture_key == "", "no capture was claimed for it"
    assert not SimulatedCharge.objects.exists()


def test_the_claim_finds_the_payment_by_its_order_among_many_of_the_tenant(tenant):
    """The claim reads one row by the order's unique index, never every payment of the tenant."""
    payments = PaymentFactory.create_batch(80, tenant=tenant)
    params = [tenant.id, "pending", "k", tenant.id, "pending", payments[0].created_at, payments[40].order_id]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql.CLAIM_CAPTURE, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "payments_payment_order_id_key" in plan, plan


def test_a_timeout_goes_through_and_changes_nothing(tenant, gateway):
    payment = PaymentFactory(tenant=tenant, payment_token="tok_timeout")
    with pytest.raises(GatewayTimeout):
        capture(payment, gateway)
    payment.refresh_from_db()
    assert payment.status == Payment.Status.PENDING
    assert not published("payment.captured", payment.order_id)


def test_a_lost_answer_then_the_retry_captures_exactly_once(tenant):
    gateway = SimulatedGateway(delay=0, lost_responses=1)
    payment = PaymentFactory(tenant=tenant)
    key = str(uuid.uuid4())
    with pytest.raises(GatewayTimeout):
        capture(payment, gateway, key=key)
    payment.refresh_from_db()
    assert payment.status == Payment.Status.PENDING

    capture(payment, gateway, key=key)
    payment.refresh_from_db()
    assert payment.status == Payment.Status.CAPTURED
    charge = SimulatedCharge.objects.get()
    assert charge.reference == payment.provider_reference
    assert len(published("payment.captured", payment.order_id)) == 1


def test_after_a_lost_answer_another_event_sends_the_key_of_the_first_and_charges_once(tenant, gateway):
    """The capture's key is claimed once per payment: a capture handled for another event (another
    reservation, or a redrive) asks the provider again under that key instead of charging anew."""
    payment = PaymentFactory(tenant=tenant)
    first_key = str(uuid.uuid4())
    with pytest.raises(GatewayTimeout):
        capture(payment, SimulatedGateway(delay=0, lost_responses=1), key=first_key)

    capture(payment, gateway, key=str(uuid.uuid4()))
    payment.refresh_from_db()
    assert payment.status == Payment.Status.CAPTURED
    charge = SimulatedCharge.objects.get()
    assert (charge.idempotency_key, charge.requests, charge.reference) == (first_key, 2, payment.provider_reference)
    assert payment.capture_key == first_key
    assert len(published("payment.captured", payment.order_id)) == 1


def test_concurrent_captures_of_one_order_charge_once(tenant):
    """Two reservation events handled at the same moment: the first claim's key is the one both
    send, so the provider charges once, and the second record finds the capture recorded."""
    payment = PaymentFactory(tenant=tenant)
    gateway = SimulatedGateway(delay=0.3, lost_responses=0)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            capture(payment, gateway)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert SimulatedCharge.objects.count() == 1
    assert len(published("payment.captured", payment.order_id)) == 1
