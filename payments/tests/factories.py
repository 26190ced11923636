import uuid
from decimal import Decimal

import factory

from payments.models import Payment
from tenants.tests.factories import TenantFactory


class PaymentFactory(factory.django.DjangoModelFactory):
    """A pending payment of a placed order, paid with the card that the simulated gateway captures."""

    class Meta:
        model = Payment

    tenant = factory.SubFactory(TenantFactory)
    order_id = factory.LazyFunction(uuid.uuid4)
    amount = Decimal("59.97")
    currency = "USD"
    payment_token = "tok_visa"
    status = Payment.Status.PENDING
