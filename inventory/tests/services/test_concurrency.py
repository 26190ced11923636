"""No oversell (guarantee 7, docs/architecture.md): concurrent orders, each in its own thread and connection."""

import itertools
import threading
import uuid
from collections.abc import Callable

import pytest
from django.db import connection, connections

from inventory.models import Product, Reservation
from inventory.services import stock_release_for_order, stock_reserve_for_order
from inventory.tests.factories import ProductFactory, order_line
from inventory.tests.helpers import events_of

pytestmark = pytest.mark.django_db(transaction=True)


def run_at_once(calls: list[Callable[[], object]]) -> list[BaseException]:
    """Run each call in its own thread with its own connection, all released together; the errors."""
    barrier = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        try:
            connection.ensure_connection()
            barrier.wait(timeout=30)
            call()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a reservation hung"
    return errors


def test_fifty_orders_for_ten_books_reserve_exactly_ten(tenant):
    product = ProductFactory(tenant=tenant, on_hand=10)
    line = order_line(product, 1)
    calls = [
        lambda: stock_reserve_for_order(tenant_id=tenant.pk, order_id=uuid.uuid4(), lines=(line,)) for _ in range(50)
    ]

    errors = run_at_once(calls)

    assert errors == []
    product.refresh_from_db()
    assert (product.on_hand, product.reserved, product.available) == (10, 10, 0)
    assert Reservation.objects.filter(status=Reservation.Status.RESERVED).count() == 10
    assert len(events_of("inventory.reserved")) == 10
    failed = events_of("inventory.reservation_failed")
    assert len(failed) == 40
    assert all(e.payload["shortages"][0]["requested"] == 1 for e in failed)


def test_orders_locking_shared_products_in_different_orders_do_not_deadlock(tenant):
    products = [ProductFactory(tenant=tenant, sku=sku, on_hand=15) for sku in ("A", "B", "C", "D")]
    # Every order of two or three products, each listed in every client order: 12 + 24 = 36 orders,
    # most of them wanting their products in the opposite order of some other order.
    line_sets = [p for n in (2, 3) for p in itertools.permutations(products, n)]
    orders = {uuid.uuid4(): tuple(order_line(p, 1) for p in chosen) for chosen in line_sets}
    calls = [
        lambda order_id=order_id, lines=lines: stock_reserve_for_order(
            tenant_id=tenant.pk, order_id=order_id, lines=lines
        )
        for order_id, lines in orders.items()
    ]

    errors = run_at_once(calls)

    assert errors == []
    reserved_orders = {e.aggregate_id for e in events_of("inventory.reserved")}
    failed_orders = {e.aggregate_id for e in events_of("inventory.reservation_failed")}
    assert reserved_orders | failed_orders == set(orders)
    assert not reserved_orders & failed_orders
    assert reserved_orders, "some orders must have been reserved"
    for product in Product.objects.all():
        wanted = sum(1 for order_id in reserved_orders if any(line.sku == product.sku for line in orders[order_id]))
        assert product.reserved == wanted
        assert product.reserved <= product.on_hand


def test_a_release_racing_its_reservation_always_ends_released(tenant):
    product = ProductFactory(tenant=tenant, on_hand=100)
    line = order_line(product, 2)
    order_ids = [uuid.uuid4() for _ in range(20)]
    calls: list[Callable[[], object]] = []
    for order_id in order_ids:
        calls.append(
            lambda order_id=order_id: stock_reserve_for_order(tenant_id=tenant.pk, order_id=order_id, lines=(line,))
        )
        calls.append(lambda order_id=order_id: stock_release_for_order(tenant_id=tenant.pk, order_id=order_id))

    errors = run_at_once(calls)

    assert errors == []
    product.refresh_from_db()
    assert product.reserved == 0
    assert Reservation.objects.filter(order_id__in=order_ids).count() == 20
    assert set(Reservation.objects.values_list("status", flat=True)) == {Reservation.Status.RELEASED}
