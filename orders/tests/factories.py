"""Factories for orders in a given state, for tests that do not go through `order_place`."""

from decimal import Decimal

import factory

from orders.models import Order, OrderItem
from tenants.tests.factories import TenantFactory, UserFactory


class OrderFactory(factory.django.DjangoModelFactory):
    """An order with one line (`lines=[(sku, quantity, unit_price), ...]` for others); the total follows."""

    class Meta:
        model = Order
        skip_postgeneration_save = True

    tenant = factory.SubFactory(TenantFactory)
    customer = factory.SubFactory(UserFactory, tenant=factory.SelfAttribute("..tenant"))
    status = Order.Status.PLACED
    currency = factory.SelfAttribute("tenant.currency")
    total_amount = Decimal("0.00")

    @factory.post_generation
    def lines(self, create: bool, extracted, **kwargs) -> None:
        lines = extracted if extracted is not None else [("BOOK-1", 2, Decimal("12.50"))]
        items = [
            OrderItem(order=self, sku=sku, title=f"Title of {sku}", quantity=quantity, unit_price=Decimal(price))
            for sku, quantity, price in lines
        ]
        self.total_amount = sum((i.unit_price * i.quantity for i in items), Decimal("0.00"))
        if create:
            OrderItem.objects.bulk_create(items)
            Order.objects.filter(pk=self.pk).update(total_amount=self.total_amount)
