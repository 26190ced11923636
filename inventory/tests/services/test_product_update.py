"""product_update: title and price only."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from domain_events.models import StoredEvent
from inventory.services import product_update
from inventory.tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


def test_changes_title_and_price_and_leaves_stock_alone():
    product = ProductFactory(title="Old", price=Decimal("5.00"), on_hand=4, reserved=1)
    product_update(product=product, title="New", price=Decimal("6.50"))
    product.refresh_from_db()
    assert (product.title, product.price, product.on_hand, product.reserved) == ("New", Decimal("6.50"), 4, 1)
    assert not StoredEvent.objects.exists()


def test_changes_only_what_is_given():
    product = ProductFactory(title="Old", price=Decimal("5.00"))
    product_update(product=product, price=Decimal("0.00"))
    product.refresh_from_db()
    assert (product.title, product.price) == ("Old", Decimal("0.00"))


@pytest.mark.parametrize("price", [Decimal("-1.00"), Decimal("1.234")])
def test_refuses_an_invalid_price(price):
    product = ProductFactory(price=Decimal("5.00"))
    with pytest.raises(ValidationError):
        product_update(product=product, price=price)
    product.refresh_from_db()
    assert product.price == Decimal("5.00")
