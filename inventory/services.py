"""Writes to the catalog and its stock; the only place in `inventory` that publishes events.

Every change to a product's counters happens under the product's row lock
(`SELECT … FOR NO KEY UPDATE`), and the event describing it is published in the same transaction,
so one product's events are recorded in the order its stock changed. Services that lock several
products lock them in one query ordered by id: every transaction takes the locks in the same
order, so two orders sharing products wait for each other instead of deadlocking.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING
from uuid import UUID

from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from core.db import get_or_insert, insert_rows
from core.errors import ApplicationError, Conflict
from domain_events.bus import event_bus
from domain_events.events import InventoryReservationFailed, InventoryReserved, OrderLine, StockAdjusted, StockShortage
from inventory.models import Product, Reservation, ReservationLine

if TYPE_CHECKING:
    from tenants.models import Tenant

logger = logging.getLogger(__name__)

# Reasons carried by `inventory.stock_adjusted`.
REASON_INITIAL_STOCK = "initial_stock"
REASON_RESTOCK = "restock"

# The most units one initial stock or restock may add, and the most a product may have on hand:
# far above any bookstore's shelf, far below the database's integer limit.
MAX_STOCK_CHANGE = 1_000_000
MAX_ON_HAND = 1_000_000_000


# --- the catalog ------------------------------------------------------------------------------


def product_create(*, tenant: Tenant, sku: str, title: str, price: Decimal, stock: int = 0) -> Product:
    """Add a product to `tenant`'s catalog with `stock` units on hand.

    Publishes `inventory.stock_adjusted` (reason `initial_stock`) when `stock` is positive.
    Raises `Conflict` if the tenant already has the sku, `ValidationError` for invalid values.
    """
    if not 0 <= stock <= MAX_STOCK_CHANGE:
        message = f"Initial stock must be between 0 and {MAX_STOCK_CHANGE}."
        raise ApplicationError(message, extra={"stock": [message]})
    product = Product(tenant=tenant, sku=sku, title=title, price=price, on_hand=stock)
    # The constraints are the database's backstop; the field validators say the same in words.
    product.full_clean(validate_unique=False, validate_constraints=False)
    if Product.objects.filter(tenant=tenant, sku=sku).exists():
        raise _duplicate_sku(sku)
    try:
        with transaction.atomic():
            product.save(force_insert=True)
            if stock > 0:
                _publish_adjustment(product, quantity_change=stock, reason=REASON_INITIAL_STOCK)
    except IntegrityError:
        # Another request created the same sku between the check and the insert.
        raise _duplicate_sku(sku) from None
    return product


def product_update(*, product: Product, title: str | None = None, price: Decimal | None = None) -> Product:
    """Change a product's title and/or price; stock is changed only by restocks and orders."""
    with transaction.atomic():
        locked = _lock(Product.objects.filter(pk=product.pk)).get()
        changed: list[str] = []
        if title is not None and title != locked.title:
            locked.title = title
            changed.append("title")
        if price is not None and price != locked.price:
            locked.price = price
            changed.append("price")
        if changed:
            locked.full_clean(validate_unique=False, validate_constraints=False)
            locked.save(update_fields=[*changed, "updated_at"])
    return locked


def product_restock(*, product: Product, quantity: int) -> Product:
    """Add `quantity` (1 to `MAX_STOCK_CHANGE`) units on hand; publishes `inventory.stock_adjusted` (`restock`).

    Raises `ApplicationError` (400) for a quantity out of range or one that would take the stock on
    hand past `MAX_ON_HAND`.
    """
    if not 0 < quantity <= MAX_STOCK_CHANGE:
        message = f"The quantity must be between 1 and {MAX_STOCK_CHANGE}."
        raise ApplicationError(message, extra={"quantity": [message]})
    with transaction.atomic():
        locked = _lock(Product.objects.filter(pk=product.pk)).get()
        if locked.on_hand + quantity > MAX_ON_HAND:
            raise ApplicationError(
                f"Stock on hand of {locked.sku} cannot exceed {MAX_ON_HAND}.",
                extra={"quantity": [f"At most {MAX_ON_HAND - locked.on_hand} more units fit."]},
            )
        locked.on_hand += quantity
        locked.save(update_fields=["on_hand", "updated_at"])
        _publish_adjustment(locked, quantity_change=quantity, reason=REASON_RESTOCK)
    return locked


# --- stock for orders -------------------------------------------------------------------------


def stock_reserve_for_order(*, tenant_id: UUID, order_id: UUID, lines: Sequence[OrderLine]) -> Reservation | None:
    """Reserve every line of an order, or none of them.

    On success creates the order's reservation, raises the products' `reserved` counters and
    publishes `inventory.reserved`. If any line is short (or its sku unknown), reserves nothing and
    publishes `inventory.reservation_failed` with every shortage; returns None then.
    If the order already has a reservation in any status (a redelivery, or a release that came
    first and left a tombstone), does nothing and returns that reservation. Inside a caller's
    transaction (the executor's) it takes no savepoint: on a failure the caller rolls back to its own.
    """
    requested = _quantities_by_sku(lines)
    with transaction.atomic(savepoint=False):
        products = {p.sku: p for p in _lock(Product.objects.filter(tenant_id=tenant_id, sku__in=requested))}
        shortages = _shortages(requested, products)
        if shortages:
            # A redelivery finds the stock short by its own reservation: that one stands.
            existing = Reservation.objects.filter(tenant_id=tenant_id, order_id=order_id).first()
            if existing is not None:
                return existing
            event_bus.publish(
                InventoryReservationFailed(tenant_id=tenant_id, order_id=order_id, shortages=tuple(shortages))
            )
            return None
        # Written unless the order has one already (a redelivery, or a release's tombstone).
        reservation, created = get_or_insert(
            Reservation, tenant_id=tenant_id, order_id=order_id, defaults={"status": Reservation.Status.RESERVED}
        )
        if not created:
            return reservation
        insert_rows(
            [
                ReservationLine(reservation=reservation, product=products[sku], quantity=quantity)
                for sku, quantity in requested.items()
            ]
        )
        now = timezone.now()
        for sku, quantity in requested.items():
            products[sku].reserved += quantity
            products[sku].updated_at = now
        # One UPDATE for every line: the rows are locked already, the values computed under the lock.
        _counters_write([products[sku] for sku in requested], now)
        event_bus.publish(InventoryReserved(tenant_id=tenant_id, order_id=order_id, lines=tuple(lines)))
    return reservation


def stock_release_for_order(*, tenant_id: UUID, order_id: UUID) -> Reservation:
    """Give an order's reserved stock back (the order was cancelled). Idempotent.

    With no reservation yet, leaves a `released` tombstone so that a reservation arriving late
    does nothing. A reservation already released or shipped is left as it is.
    """
    with transaction.atomic():
        reservation = _lock(Reservation.objects.filter(tenant_id=tenant_id, order_id=order_id)).first()
        if reservation is None:
            try:
                with transaction.atomic():
                    return Reservation.objects.create(
                        tenant_id=tenant_id, order_id=order_id, status=Reservation.Status.RELEASED
                    )
            except IntegrityError:
                # The reservation committed meanwhile: release it like any other.
                reservation = _lock(Reservation.objects.filter(tenant_id=tenant_id, order_id=order_id)).get()
        if reservation.status != Reservation.Status.RESERVED:
            return reservation
        quantities = _reserved_quantities(reservation)
        released = list(_lock(Product.objects.filter(pk__in=quantities)))
        now = timezone.now()
        for product in released:
            product.reserved -= quantities[product.pk]
            product.updated_at = now
        _counters_write(released, now)
        reservation.status = Reservation.Status.RELEASED
        reservation.save(update_fields=["status", "updated_at"])
    return reservation


def stock_ship_for_order(*, tenant_id: UUID, order_id: UUID) -> Reservation | None:
    """The order left the warehouse: its reserved units leave `on_hand` and `reserved`. Idempotent.

    Returns the reservation, or None if the order has none (nothing was ever reserved for it).
    """
    with transaction.atomic():
        reservation = _lock(Reservation.objects.filter(tenant_id=tenant_id, order_id=order_id)).first()
        if reservation is None:
            logger.warning("order %s was fulfilled but has no stock reservation; nothing to ship", order_id)
            return None
        if reservation.status != Reservation.Status.RESERVED:
            return reservation
        quantities = _reserved_quantities(reservation)
        shipped = list(_lock(Product.objects.filter(pk__in=quantities)))
        now = timezone.now()
        for product in shipped:
            product.on_hand -= quantities[product.pk]
            product.reserved -= quantities[product.pk]
            product.updated_at = now
        _counters_write(shipped, now)
        reservation.status = Reservation.Status.SHIPPED
        reservation.save(update_fields=["status", "updated_at"])
    return reservation


# --- helpers ----------------------------------------------------------------------------------

# The counters of locked products, written in one statement (PostgreSQL): `bulk_update` compiles a
# CASE per column on every call, and a reservation runs for every order placed.
_COUNTERS = f"""UPDATE {Product._meta.db_table} AS p
   SET on_hand = v.on_hand, reserved = v.reserved, updated_at = %s
  FROM unnest(%s::uuid[], %s::integer[], %s::integer[]) AS v(id, on_hand, reserved)
 WHERE p.id = v.id"""  # noqa: S608


def _counters_write(products: Sequence[Product], now: datetime) -> None:
    """Write the `on_hand` and `reserved` of `products` as computed under their row locks, and `now`
    as their `updated_at`."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                _COUNTERS,
                [now, [p.pk for p in products], [p.on_hand for p in products], [p.reserved for p in products]],
            )
    else:
        Product.objects.bulk_update(products, ["on_hand", "reserved", "updated_at"])


def _lock(queryset: QuerySet) -> QuerySet:
    """Lock the rows in id order: the one lock order every service follows."""
    return queryset.select_for_update(no_key=True).order_by("id")


def _quantities_by_sku(lines: Iterable[OrderLine]) -> dict[str, int]:
    quantities: dict[str, int] = defaultdict(int)
    for line in lines:
        if line.quantity <= 0:
            raise ApplicationError(f"Line {line.sku} has a non-positive quantity ({line.quantity}).")
        quantities[line.sku] += line.quantity
    return dict(quantities)


def _shortages(requested: dict[str, int], products: dict[str, Product]) -> list[StockShortage]:
    """The lines that cannot be reserved; a sku missing from the catalog has nothing available."""
    shortages = []
    for sku, quantity in requested.items():
        available = products[sku].available if sku in products else 0
        if available < quantity:
            shortages.append(StockShortage(sku=sku, requested=quantity, available=available))
    return shortages


def _reserved_quantities(reservation: Reservation) -> dict[UUID, int]:
    return dict(reservation.lines.values_list("product_id", "quantity"))


def _publish_adjustment(product: Product, *, quantity_change: int, reason: str) -> None:
    event_bus.publish(
        StockAdjusted(
            tenant_id=product.tenant_id,
            product_id=product.pk,
            sku=product.sku,
            quantity_change=quantity_change,
            on_hand=product.on_hand,
            reason=reason,
        )
    )


def _duplicate_sku(sku: str) -> Conflict:
    message = f"A product with SKU {sku!r} already exists."
    return Conflict(message, extra={"sku": [message]})
