"""product_restock: more stock on hand, and the event that says so."""

import pytest

from core.errors import ApplicationError
from domain_events.models import StoredEvent
from inventory.services import MAX_ON_HAND, product_restock
from inventory.tests.factories import ProductFactory
from inventory.tests.helpers import events_of

pytestmark = pytest.mark.django_db


def test_adds_stock_and_publishes_stock_adjusted():
    product = ProductFactory(sku="BOOK-1", on_hand=3, reserved=2)
    restocked = product_restock(product=product, quantity=5)

    product.refresh_from_db()
    assert (product.on_hand, product.reserved, product.available) == (8, 2, 6)
    assert restocked.on_hand == 8
    [event] = events_of("inventory.stock_adjusted")
    assert event.tenant_id == product.tenant_id
    assert event.aggregate_id == product.pk
    assert event.payload == {
        "product_id": str(product.pk),
        "sku": "BOOK-1",
        "quantity_change": 5,
        "on_hand": 8,
        "reason": "restock",
    }


def test_each_restock_is_one_event_in_order():
    product = ProductFactory(on_hand=0)
    product_restock(product=product, quantity=1)
    product_restock(product=product, quantity=2)
    assert [(e.payload["quantity_change"], e.payload["on_hand"]) for e in events_of("inventory.stock_adjusted")] == [
        (1, 1),
        (2, 3),
    ]


@pytest.mark.parametrize("quantity", [0, -3, 1_000_001])
def test_refuses_a_quantity_out_of_bounds(quantity):
    product = ProductFactory(on_hand=3)
    with pytest.raises(ApplicationError, match="quantity"):
        product_restock(product=product, quantity=quantity)
    product.refresh_from_db()
    assert product.on_hand == 3
    assert not StoredEvent.objects.exists()


def test_refuses_to_exceed_the_largest_stock_on_hand():
    product = ProductFactory(on_hand=MAX_ON_HAND - 10)
    with pytest.raises(ApplicationError, match="cannot exceed"):
        product_restock(product=product, quantity=11)
    product.refresh_from_db()
    assert product.on_hand == MAX_ON_HAND - 10
