"""Payment tokens are stored encrypted with the field encryption keys, in the payment and in the
simulated provider's ledger."""

import uuid
from decimal import Decimal

import pytest
from django.db import connection

from payments.models import Payment
from payments.services import payment_register_for_order

pytestmark = pytest.mark.django_db

CARD = "tok_visa_4242_SECRET"


def test_a_payment_token_is_encrypted_in_the_database_and_read_back_clear(tenant):
    payment = payment_register_for_order(
        tenant_id=tenant.id, order_id=uuid.uuid4(), amount=Decimal("9.99"), currency="USD", payment_token=CARD
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT payment_token FROM payments_payment WHERE id = %s", [payment.pk])
        stored = cursor.fetchone()[0]
    assert CARD not in stored
    assert Payment.objects.get(pk=payment.pk).payment_token == CARD
    assert Payment.objects.get(pk=payment.pk).masked_token == "••••CRET"
