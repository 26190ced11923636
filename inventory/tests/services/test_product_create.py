"""product_create: validation, one sku per tenant, and the initial stock event."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from core.errors import ApplicationError, Conflict
from domain_events.models import StoredEvent
from inventory.models import Product
from inventory.services import product_create
from inventory.tests.helpers import events_of

pytestmark = pytest.mark.django_db


def test_creates_the_product_and_publishes_its_initial_stock(tenant):
    product = product_create(tenant=tenant, sku="BOOK-1", title="Dune", price=Decimal("19.99"), stock=7)

    product.refresh_from_db()
    assert (product.tenant_id, product.sku, product.title, product.price) == (
        tenant.pk,
        "BOOK-1",
        "Dune",
        Decimal("19.99"),
    )
    assert (product.on_hand, product.reserved, product.available) == (7, 0, 7)
    [event] = events_of("inventory.stock_adjusted")
    assert event.tenant_id == tenant.pk
    assert event.aggregate_id == product.pk
    assert event.version == 2
    assert event.payload == {
        "product_id": str(product.pk),
        "sku": "BOOK-1",
        "quantity_change": 7,
        "on_hand": 7,
        "reason": "initial_stock",
    }


def test_no_stock_publishes_nothing(tenant):
    product_create(tenant=tenant, sku="BOOK-1", title="Dune", price=Decimal("19.99"))
    assert Product.objects.get(sku="BOOK-1").on_hand == 0
    assert not StoredEvent.objects.exists()


def test_a_sku_is_unique_per_tenant_only(tenant, other_tenant):
    product_create(tenant=tenant, sku="BOOK-1", title="Dune", price=Decimal("1.00"), stock=1)
    with pytest.raises(Conflict, match="BOOK-1"):
        product_create(tenant=tenant, sku="BOOK-1", title="Other", price=Decimal("2.00"), stock=1)
    product_create(tenant=other_tenant, sku="BOOK-1", title="Dune", price=Decimal("1.00"))
    assert Product.objects.filter(sku="BOOK-1").count() == 2
    assert len(events_of("inventory.stock_adjusted")) == 1


@pytest.mark.parametrize(
    ("sku", "price"),
    [
        ("has space", Decimal("1.00")),
        ("BOOK-1\n", Decimal("1.00")),
        ("", Decimal("1.00")),
        ("x" * 65, Decimal("1.00")),
        ("BOOK-1", Decimal("-0.01")),
        ("BOOK-1", Decimal("1.001")),
        ("BOOK-1", Decimal("12345678901.00")),
    ],
)
def test_invalid_values_are_refused_and_nothing_is_stored(tenant, sku, price):
    with pytest.raises(ValidationError):
        product_create(tenant=tenant, sku=sku, title="Dune", price=price, stock=3)
    assert not Product.objects.exists()
    assert not StoredEvent.objects.exists()


@pytest.mark.parametrize("stock", [-1, 1_000_001])
def test_initial_stock_is_bounded(tenant, stock):
    with pytest.raises(ApplicationError, match="Initial stock"):
        product_create(tenant=tenant, sku="BOOK-1", title="Dune", price=Decimal("1.00"), stock=stock)
    assert not Product.objects.exists()


def test_the_event_is_stored_only_if_the_product_is(tenant):
    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        product_create(tenant=tenant, sku="BOOK-1", title="Dune", price=Decimal("1.00"), stock=5)
        assert StoredEvent.objects.count() == 1
        raise Abort
    assert not Product.objects.exists()
    assert not StoredEvent.objects.exists()
