"""Factories for the catalog; stock set directly, for tests that start from a given state."""

from decimal import Decimal

import factory

from domain_events.events import OrderLine
from inventory.models import Product
from tenants.tests.factories import TenantFactory


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    tenant = factory.SubFactory(TenantFactory)
    sku = factory.Sequence(lambda n: f"BOOK-{n:04d}")
    title = factory.Sequence(lambda n: f"Book number {n}")
    price = Decimal("10.00")
    on_hand = 10
    reserved = 0


def order_line(product: Product, quantity: int = 1) -> OrderLine:
    """An order line for `product` as `order.placed` carries it."""
    return OrderLine(sku=product.sku, title=product.title, quantity=quantity, unit_price=product.price)
