"""stock_release_for_order: gives stock back once; leaves a tombstone when nothing was reserved."""

import uuid

import pytest

from inventory.models import Reservation
from inventory.services import stock_release_for_order, stock_reserve_for_order, stock_ship_for_order
from inventory.tests.factories import ProductFactory, order_line

pytestmark = pytest.mark.django_db


def test_gives_the_reserved_stock_back_once(tenant):
    dune = ProductFactory(tenant=tenant, on_hand=5)
    sicp = ProductFactory(tenant=tenant, on_hand=5)
    order_id = uuid.uuid4()
    stock_reserve_for_order(tenant_id=tenant.pk, order_id=order_id, lines=(order_line(dune, 2), order_line(sicp, 1)))
    other = uuid.uuid4()
    stock_reserve_for_order(tenant_id=tenant.pk, order_id=other, lines=(order_line(dune, 1),))

    for _ in range(2):
        reservation = stock_release_for_order(tenant_id=tenant.pk, order_id=order_id)
        assert reservation.status == Reservation.Status.RELEASED
        dune.refresh_from_db()
        sicp.refresh_from_db()
        # The other order's unit stays reserved.
        assert (dune.on_hand, dune.reserved) == (5, 1)
        assert (sicp.on_hand, sicp.reserved) == (5, 0)


def test_without_a_reservation_leaves_a_released_tombstone(tenant):
    order_id = uuid.uuid4()
    tombstone = stock_release_for_order(tenant_id=tenant.pk, order_id=order_id)
    assert tombstone.status == Reservation.Status.RELEASED
    assert tombstone.tenant_id == tenant.pk
    assert not tombstone.lines.exists()
    assert stock_release_for_order(tenant_id=tenant.pk, order_id=order_id).pk == tombstone.pk
    assert Reservation.objects.count() == 1


def test_a_shipped_reservation_is_not_released(tenant):
    dune = ProductFactory(tenant=tenant, on_hand=5)
    order_id = uuid.uuid4()
    stock_reserve_for_order(tenant_id=tenant.pk, order_id=order_id, lines=(order_line(dune, 2),))
    stock_ship_for_order(tenant_id=tenant.pk, order_id=order_id)

    assert stock_release_for_order(tenant_id=tenant.pk, order_id=order_id).status == Reservation.Status.SHIPPED
    dune.refresh_from_db()
    assert (dune.on_hand, dune.reserved) == (3, 0)
