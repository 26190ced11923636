"""stock_ship_for_order: reserved units leave the shelf, once."""

import uuid

import pytest

from inventory.models import Reservation
from inventory.services import stock_release_for_order, stock_reserve_for_order, stock_ship_for_order
from inventory.tests.factories import ProductFactory, order_line

pytestmark = pytest.mark.django_db


def test_takes_the_reserved_units_off_the_shelf_once(tenant):
    dune = ProductFactory(tenant=tenant, on_hand=5)
    sicp = ProductFactory(tenant=tenant, on_hand=4)
    order_id = uuid.uuid4()
    stock_reserve_for_order(tenant_id=tenant.pk, order_id=order_id, lines=(order_line(dune, 2), order_line(sicp, 4)))

    for _ in range(2):
        reservation = stock_ship_for_order(tenant_id=tenant.pk, order_id=order_id)
        assert reservation.status == Reservation.Status.SHIPPED
        dune.refresh_from_db()
        sicp.refresh_from_db()
        assert (dune.on_hand, dune.reserved, dune.available) == (3, 0, 3)
        assert (sicp.on_hand, sicp.reserved, sicp.available) == (0, 0, 0)


def test_an_order_without_reservation_ships_nothing(tenant):
    dune = ProductFactory(tenant=tenant, on_hand=5)
    assert stock_ship_for_order(tenant_id=tenant.pk, order_id=uuid.uuid4()) is None
    dune.refresh_from_db()
    assert dune.on_hand == 5
    assert not Reservation.objects.exists()


def test_a_released_reservation_ships_nothing(tenant):
    dune = ProductFactory(tenant=tenant, on_hand=5)
    order_id = uuid.uuid4()
    stock_reserve_for_order(tenant_id=tenant.pk, order_id=order_id, lines=(order_line(dune, 2),))
    stock_release_for_order(tenant_id=tenant.pk, order_id=order_id)

    assert stock_ship_for_order(tenant_id=tenant.pk, order_id=order_id).status == Reservation.Status.RELEASED
    dune.refresh_from_db()
    assert (dune.on_hand, dune.reserved) == (5, 0)
