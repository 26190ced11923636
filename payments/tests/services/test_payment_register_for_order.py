import uuid
from decimal import Decimal

import pytest

from payments.models import Payment
from payments.services import payment_register_for_order
from payments.tests.factories import PaymentFactory

pytestmark = pytest.mark.django_db(transaction=True)


def register(tenant, order_id: uuid.UUID, card: str = "tok_visa") -> Payment:
    return payment_register_for_order(
        tenant_id=tenant.id, order_id=order_id, amount=Decimal("59.97"), currency="USD", payment_token=card
    )


def test_a_placed_order_gets_a_pending_payment(tenant):
    order_id = uuid.uuid4()
    payment = register(tenant, order_id)
    payment.refresh_from_db()
    assert payment.status == Payment.Status.PENDING
    assert (payment.tenant_id, payment.order_id) == (tenant.id, order_id)
    assert (payment.amount, payment.currency, payment.payment_token) == (Decimal("59.97"), "USD", "tok_visa")


def test_registering_again_is_a_no_op(tenant):
    order_id = uuid.uuid4()
    first = register(tenant, order_id)
    second = register(tenant, order_id, card="tok_chargeDeclined")
    assert second.pk == first.pk
    assert Payment.objects.filter(order_id=order_id).count() == 1
    assert Payment.objects.get(order_id=order_id).payment_token == "tok_visa"


def test_a_voided_tombstone_is_kept(tenant):
    tombstone = PaymentFactory(tenant=tenant, status=Payment.Status.VOIDED, payment_token="")
    payment = register(tenant, tombstone.order_id)
    assert payment.pk == tombstone.pk
    tombstone.refresh_from_db()
    assert tombstone.status == Payment.Status.VOIDED
    assert tombstone.payment_token == ""
