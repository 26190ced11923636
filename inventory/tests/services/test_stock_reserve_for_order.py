"""stock_reserve_for_order: every line or none, once per order, never after a release."""

import uuid

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from domain_events.events import OrderLine
from domain_events.models import StoredEvent
from inventory.models import Product, Reservation
from inventory.services import stock_release_for_order, stock_reserve_for_order
from inventory.tests.factories import ProductFactory, order_line
from inventory.tests.helpers import events_of

pytestmark = pytest.mark.django_db


def test_reserves_every_line_and_publishes_reserved(tenant):
    dune = ProductFactory(tenant=tenant, sku="DUNE", on_hand=5)
    sicp = ProductFactory(tenant=tenant, sku="SICP", on_hand=2)
    order_id = uuid.uuid4()
    lines = (order_line(dune, 3), order_line(sicp, 2))

    reservation = stock_reserve_for_order(tenant_id=tenant.pk, order_id=order_id, lines=lines)

    assert reservation.status == Reservation.Status.RESERVED
    assert sorted(reservation.lines.values_list("product__sku", "quantity")) == [("DUNE", 3), ("SICP", 2)]
    dune.refresh_from_db()
    sicp.refresh_from_db()
    assert (dune.on_hand, dune.reserved, dune.available) == (5, 3, 2)
    assert (sicp.on_hand, sicp.reserved, sicp.available) == (2, 2, 0)
    [event] = events_of("inventory.reserved")
    assert event.aggregate_id == order_id
    assert event.tenant_id == tenant.pk
    assert event.payload["order_id"] == str(order_id)
    assert event.payload["lines"] == [
        {"sku": "DUNE", "title": dune.title, "quantity": 3, "unit_price": "10.00"},
        {"sku": "SICP", "title": sicp.title, "quantity": 2, "unit_price": "10.00"},
    ]
    assert not events_of("inventory.reservation_failed")


def test_a_shortage_reserves_nothing_and_names_every_short_line(tenant):
    dune = ProductFactory(tenant=tenant, sku="DUNE", on_hand=5)
    sicp = ProductFactory(tenant=tenant, sku="SICP", on_hand=3, reserved=2)
    order_id = uuid.uuid4()
    lines = (
        order_line(dune, 5),
        order_line(sicp, 2),
        OrderLine(sku="GHOST", title="Not in the catalog", quantity=1, unit_price=dune.price),
    )

    assert stock_reserve_for_order(tenant_id=tenant.pk, order_id=order_id, lines=lines) is None

    assert not Reservation.objects.exists()
    assert list(Product.objects.order_by("sku").values_list("sku", "reserved")) == [("DUNE", 0), ("SICP", 2)]
    [event] = events_of("inventory.reservation_failed")
    assert event.aggregate_id == order_id
    assert event.payload == {
        "order_id": str(order_id),
        "shortages": [
            {"sku": "SICP", "requested": 2, "available": 1},
            {"sku": "GHOST", "requested": 1, "available": 0},
        ],
    }
    assert not events_of("inventory.reserved")


def test_another_tenants_product_is_unknown(tenant, other_tenant):
    theirs = ProductFactory(tenant=other_tenant, sku="DUNE", on_hand=5)
    stock_reserve_for_order(tenant_id=tenant.pk, order_id=uuid.uuid4(), lines=(order_line(theirs, 1),))
    theirs.refresh_from_db()
    assert theirs.reserved == 0
    [event] = events_of("inventory.reservation_failed")
    assert event.payload["shortages"] == [{"sku": "DUNE", "requested": 1, "available": 0}]


@pytest.mark.parametrize("on_hand", [5, 2], ids=["copies left", "the first took the last copies"])
def test_reserving_the_same_order_again_does_nothing(tenant, on_hand):
    """A redelivery that finds the stock short by its own reservation publishes no failure either."""
    dune = ProductFactory(tenant=tenant, on_hand=on_hand)
    order_id = uuid.uuid4()
    first = stock_reserve_for_order(tenant_id=tenant.pk, order_id=order_id, lines=(order_line(dune, 2),))
    again = stock_reserve_for_order(tenant_id=tenant.pk, order_id=order_id, lines=(order_line(dune, 2),))
    assert again.pk == first.pk
    assert again.status == Reservation.Status.RESERVED
    dune.refresh_from_db()
    assert (dune.on_hand, dune.reserved) == (on_hand, 2)
    assert len(events_of("inventory.reserved")) == 1
    assert events_of("inventory.reservation_failed") == []


@pytest.mark.parametrize(("on_hand", "quantity"), [(5, 2), (1, 5)], ids=["enough stock", "stock short"])
def test_an_order_released_before_its_reservation_is_never_reserved(tenant, on_hand, quantity):
    dune = ProductFactory(tenant=tenant, on_hand=on_hand)
    order_id = uuid.uuid4()
    stock_release_for_order(tenant_id=tenant.pk, order_id=order_id)

    tombstone = stock_reserve_for_order(tenant_id=tenant.pk, order_id=order_id, lines=(order_line(dune, quantity),))

    assert tombstone.status == Reservation.Status.RELEASED
    assert not tombstone.lines.exists()
    dune.refresh_from_db()
    assert dune.reserved == 0
    assert not StoredEvent.objects.filter(type__startswith="inventory.reserv").exists()


def test_the_products_are_locked_in_one_query_in_id_order(tenant):
    """The fixed lock order that keeps concurrent orders on the same products deadlock-free."""
    a = ProductFactory(tenant=tenant, sku="A")
    b = ProductFactory(tenant=tenant, sku="B")
    with CaptureQueriesContext(connection) as queries:
        stock_reserve_for_order(tenant_id=tenant.pk, order_id=uuid.uuid4(), lines=(order_line(b), order_line(a)))
    locks = [q["sql"] for q in queries.captured_queries if "FOR NO KEY UPDATE" in q["sql"]]
    assert len(locks) == 1
    assert 'FROM "inventory_product"' in locks[0]
    assert locks[0].split("ORDER BY")[1].strip().startswith('"inventory_product"."id" ASC')


def test_the_database_refuses_to_reserve_more_than_is_on_hand():
    product = ProductFactory(on_hand=2)
    with pytest.raises(IntegrityError), transaction.atomic():
        Product.objects.filter(pk=product.pk).update(reserved=3)
    with pytest.raises(IntegrityError), transaction.atomic():
        Product.objects.filter(pk=product.pk).update(on_hand=-1)
