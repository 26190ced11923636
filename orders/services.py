"""Writes of the orders module; the only place that publishes `order.*` events.

Placing an order prices it from the catalog (the `QuoteProducts` query) before anything is
written, then saves it and records `order.placed` in one short transaction. Every later
transition locks the order row first, so one order's events are recorded in the order they
happened and concurrent transitions (a payment captured while the customer cancels) serialize.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypedDict

from django.db import connection, transaction
from django.utils import timezone
from rest_framework import serializers

from core.errors import ApplicationError, Conflict, NotFound
from core.serializers import StrictInputSerializer
from domain_events.bus import event_bus
from domain_events.events import (
    OrderCancelled,
    OrderConfirmed,
    OrderDelivered,
    OrderFulfilled,
    OrderLine,
    OrderPlaced,
    OrderShipmentLost,
)
from domain_events.queries import ApplyShipmentNotice, NoticeOutcome, ProductQuote, QuoteProducts
from orders.models import MAX_QUANTITY, SKU_MAX_LENGTH, TRACKING_NUMBER_MAX_LENGTH, Order, OrderItem

if TYPE_CHECKING:
    from tenants.models import Tenant, User

logger = logging.getLogger(__name__)

MAX_LINES = 100
PAYMENT_TOKEN_MAX_LENGTH = 255
CENT = Decimal("0.01")
# Order.total_amount is Decimal(12, 2).
MAX_TOTAL = Decimal("9999999999.99")


class OrderItemRequest(TypedDict):
    """One line as the customer asks for it: what and how many, never at what price."""

    sku: str
    quantity: int


# --- placing --------------------------------------------------------------------------------


class OrderPlaceItemSerializer(StrictInputSerializer):
    """One line of `POST orders/`: a sku and a whole quantity; any price sent is ignored."""

    sku = serializers.CharField(max_length=SKU_MAX_LENGTH)
    quantity = serializers.IntegerField(min_value=1, max_value=MAX_QUANTITY)


class OrderPlaceSerializer(StrictInputSerializer):
    """An order as `POST orders/` takes it: its lines and the payment token."""

    items = OrderPlaceItemSerializer(many=True, allow_empty=False, max_length=MAX_LINES)
    payment_token = serializers.CharField(max_length=PAYMENT_TOKEN_MAX_LENGTH)


def order_request_validate(data: Any) -> dict[str, Any]:
    """The order request `data` as valid values (strings trimmed), or `ApplicationError` (400).

    The one validation of an order, for the API and every other caller: exactly `items` (1 to
    `MAX_LINES` lines of distinct skus, each a sku and a quantity 1 to `MAX_QUANTITY`) and a
    `payment_token`, each of its JSON type; the field messages are the API's.
    """
    serializer = OrderPlaceSerializer(data=data)
    if not serializer.is_valid():
        raise ApplicationError("Invalid input.", extra=serializer.errors)
    valid = serializer.validated_data
    seen: set[str] = set()
    repeated: dict[int, dict[str, list[str]]] = {}
    for index, item in enumerate(valid["items"]):
        if item["sku"] in seen:
            repeated[index] = {"sku": [f"{item['sku']!r} appears more than once; list each sku once."]}
        seen.add(item["sku"])
    if repeated:
        # Well-formed lines that the document cannot rule out (JSON Schema has no "distinct by sku").
        raise ApplicationError("The order lists a sku more than once.", extra={"items": repeated})
    return valid


def order_place(*, tenant: Tenant, customer: User, items: Sequence[OrderItemRequest], payment_token: str) -> Order:
    """Place an order for `customer` of `items`, paid with `payment_token`: `order_place_from`."""
    return order_place_from(tenant=tenant, customer=customer, data={"items": items, "payment_token": payment_token})


def order_place_from(*, tenant: Tenant, customer: User, data: Any) -> Order:
    """Place the order that the request `data` asks for (as sent: `order_request_validate` checks
    it), priced from `tenant`'s catalog, and publish `order.placed`.

    A sku the catalog does not know is refused, naming it. Raises `ApplicationError` (400) with
    field messages, for a malformed request and for a well-formed one that cannot be placed (a sku
    twice, a sku not in the catalog, a total too large); nothing is written then. The catalog is
    asked before the transaction opens, which holds only the inserts and the event.
    """
    request = order_request_validate(data)
    items, payment_token = request["items"], request["payment_token"]
    skus = tuple(item["sku"] for item in items)
    quotes: dict[str, ProductQuote] = event_bus.ask(QuoteProducts(tenant_id=tenant.id, skus=skus))
    unknown = [sku for sku in skus if sku not in quotes]
    if unknown:
        raise ApplicationError(
            f"Not in the catalog: {', '.join(unknown)}.",
            extra={
                "items": {i: {"sku": [f"No product with sku {sku!r}."]} for i, sku in enumerate(skus) if sku in unknown}
            },
        )

    order = Order(tenant=tenant, customer=customer, currency=tenant.currency)
    order_items = [
        OrderItem(
            order=order,
            sku=item["sku"],
            title=quotes[item["sku"]].title,
            quantity=item["quantity"],
            unit_price=quotes[item["sku"]].unit_price.quantize(CENT),
        )
        for item in items
    ]
    order.total_amount = sum((i.unit_price * i.quantity for i in order_items), Decimal("0.00")).quantize(CENT)
    if order.total_amount > MAX_TOTAL:
        raise ApplicationError("The order's total is too large.", extra={"items": ["The order's total is too large."]})

    with transaction.atomic():
        _insert_with_items(order, order_items)
        event_bus.publish(
            OrderPlaced(
                tenant_id=tenant.id,
                order_id=order.id,
                customer_id=customer.pk,
                lines=_lines_of(order_items),
                total_amount=order.total_amount,
                currency=order.currency,
                payment_token=payment_token,
            )
        )
    _keep_items(order, order_items)
    logger.info("order %s placed: %d lines, %s %s", order.id, len(order_items), order.total_amount, order.currency)
    return order


_ORDER_COLUMNS = tuple(f.column for f in Order._meta.concrete_fields)
_ITEM_COLUMNS = ("order_id", "sku", "title", "quantity", "unit_price")
# The order and its lines in one statement: one round trip, and no ORM insert compiled per request.
_INSERT_WITH_ITEMS = f"""
WITH placed AS (
    INSERT INTO {Order._meta.db_table} ({", ".join(_ORDER_COLUMNS)}) VALUES ({", ".join(["%s"] * len(_ORDER_COLUMNS))})
    RETURNING id
)
INSERT INTO {OrderItem._meta.db_table} ({", ".join(_ITEM_COLUMNS)})
SELECT placed.id, i.sku, i.title, i.quantity, i.unit_price
  FROM placed, unnest(%s::text[], %s::text[], %s::integer[], %s::numeric[])
       WITH ORDINALITY AS i(sku, title, quantity, unit_price, n)
 ORDER BY i.n
RETURNING id"""  # noqa: S608 (names from the models, values bound)


def _insert_with_items(order: Order, items: list[OrderItem]) -> None:
    """Insert `order` and its `items`, as `save()` and `bulk_create()` would."""
    if connection.vendor != "postgresql":
        order.save(force_insert=True)
        OrderItem.objects.bulk_create(items)
        return
    order.created_at = order.updated_at = timezone.now()
    values = [getattr(order, f.attname) for f in Order._meta.concrete_fields]
    columns = (
        [i.sku for i in items],
        [i.title for i in items],
        [i.quantity for i in items],
        [i.unit_price for i in items],
    )
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_WITH_ITEMS, [*values, *columns])
        ids = [row[0] for row in cursor.fetchall()]
    for instance, pk in [(order, order.pk), *zip(items, ids, strict=True)]:
        instance.pk = pk
        instance._state.adding = False
        instance._state.db = "default"
    for item in items:
        item.order_id = order.pk


# --- transitions ----------------------------------------------------------------------------


def order_confirm(*, order: Order) -> Order:
    """Confirm a placed order whose stock is reserved and payment captured; publish `order.confirmed`.

    Anything but a placed order is left as it is (a cancelled order's payment is refunded by
    payments when it sees `order.cancelled`), so a late or repeated capture changes nothing.
    Inside a caller's transaction (the executor's) it takes no savepoint: on a failure the caller
    rolls back to its own.
    """
    with transaction.atomic(savepoint=False):
        locked = _locked(order)
        if locked.status != Order.Status.PLACED:
            logger.info("order %s not confirmed: it is %s", locked.id, locked.status)
            return locked
        locked.status = Order.Status.CONFIRMED
        locked.save(update_fields=["status", "updated_at"])
        event_bus.publish(
            OrderConfirmed(
                tenant_id=locked.tenant_id,
                order_id=locked.id,
                total_amount=locked.total_amount,
                currency=locked.currency,
            )
        )
    logger.info("order %s confirmed", locked.id)
    return locked


def order_cancel(*, order: Order, reason: str, by: User | None) -> Order:
    """Cancel a placed or confirmed order for `reason`; publish `order.cancelled`.

    `by` is who asks (None for the platform itself); a customer may cancel only their own order.
    Raises `Conflict` (409) if the order is fulfilled, delivered or already cancelled.
    """
    _check_reason(reason)
    if by is not None and not _may_act_on(by, order):
        raise NotFound("Not found.")
    with transaction.atomic():
        locked = _locked(order)
        if not locked.is_cancellable:
            message = (
                "The order is already cancelled."
                if locked.status == Order.Status.CANCELLED
                else f"A {locked.status} order cannot be cancelled."
            )
            raise Conflict(message, extra={"status": locked.status})
        _cancel(locked, reason)
    logger.info("order %s cancelled (%s) by %s", locked.id, reason, by.get_username() if by else "the platform")
    return locked


def order_cancel_if_open(*, order: Order, reason: str) -> Order:
    """Cancel the order for `reason` if it is still placed or confirmed; otherwise change nothing.

    For the platform's reactions to a failure (no stock, a declined payment), which may arrive
    after the customer cancelled or the order shipped.
    """
    _check_reason(reason)
    with transaction.atomic():
        locked = _locked(order)
        if not locked.is_cancellable:
            logger.info("order %s not cancelled for %s: it is %s", locked.id, reason, locked.status)
            return locked
        _cancel(locked, reason)
    logger.info("order %s cancelled (%s)", locked.id, reason)
    return locked


def order_fulfill(*, order: Order, tracking_number: str) -> Order:
    """Ship a confirmed order with `tracking_number`; publish `order.fulfilled`.

    Raises `ApplicationError` (400) for a missing or too long tracking number and `Conflict`
    (409) unless the order is confirmed.
    """
    tracking_number = tracking_number.strip() if isinstance(tracking_number, str) else ""
    if not tracking_number:
        raise ApplicationError(
            "A tracking number is required.", extra={"tracking_number": ["A tracking number is required."]}
        )
    if len(tracking_number) > TRACKING_NUMBER_MAX_LENGTH:
        message = f"At most {TRACKING_NUMBER_MAX_LENGTH} characters."
        raise ApplicationError(message, extra={"tracking_number": [message]})
    with transaction.atomic():
        locked = _locked(order)
        if locked.status != Order.Status.CONFIRMED:
            raise Conflict(
                f"Only a confirmed order can be fulfilled; this one is {locked.status}.",
                extra={"status": locked.status},
            )
        _fulfil(locked, tracking_number)
    logger.info("order %s fulfilled, tracking %s", locked.id, tracking_number)
    return locked


# --- the distributor's shipment notices ---------------------------------------------------------

NOTICE_KINDS = ("shipped", "delivered", "lost")


def shipment_notice_apply(command: ApplyShipmentNotice) -> NoticeOutcome:
    """Apply the distributor's notice to the tenant's order, in the caller's transaction (the
    answer to `ApplyShipmentNotice`: the inbox records the notice in the same transaction).

    - `shipped` fulfils a confirmed order with the tracking number (`order.fulfilled`);
    - `delivered` moves a fulfilled order to `delivered` (`order.delivered`);
    - `lost` records `order.shipment_lost` for a fulfilled order.

    Notices may come out of order. A `delivered` or `lost` for an order still confirmed means its
    `shipped` is late: the order is fulfilled first with the notice's tracking number, then
    delivered (or reported lost), so it ends right; the late `shipped` then has nothing to do.
    A notice the order is already past (same tracking number) has nothing to do. Anything else is
    parked with its reason: an order of no such id in this tenant (another tenant's looks the same),
    a cancelled or placed order, another tracking number than the order's, a delivered order lost.
    """
    if command.kind not in NOTICE_KINDS:
        return NoticeOutcome(status="parked", reason=f"unknown notice type {command.kind!r}")
    tracking_number = command.tracking_number.strip()
    if not tracking_number or len(tracking_number) > TRACKING_NUMBER_MAX_LENGTH:
        return NoticeOutcome(status="parked", reason="the tracking number is missing or too long")
    orders = Order.objects.select_for_update(no_key=True)
    locked = orders.filter(tenant_id=command.tenant_id, pk=command.order_id).first()
    if locked is None:
        return NoticeOutcome(status="parked", reason="no such order in this bookstore")
    status = locked.status
    if status in (Order.Status.PLACED, Order.Status.CANCELLED):
        return NoticeOutcome(status="parked", reason=f"impossible: the order is {status}")
    if status != Order.Status.CONFIRMED and locked.tracking_number != tracking_number:
        return NoticeOutcome(
            status="parked", reason=f"the order shipped with another tracking number ({locked.tracking_number})"
        )
    if command.kind == "lost" and status == Order.Status.DELIVERED:
        return NoticeOutcome(status="parked", reason="impossible: the order is delivered")
    if command.kind == "shipped" and status != Order.Status.CONFIRMED:
        return NoticeOutcome(status="nothing_to_do", reason=f"the order is {status} already")
    if command.kind == "delivered" and status == Order.Status.DELIVERED:
        return NoticeOutcome(status="nothing_to_do", reason="the order is delivered already")

    events: list[str] = []
    if status == Order.Status.CONFIRMED:
        _fulfil(locked, tracking_number, shipped_at=command.occurred_at if command.kind == "shipped" else None)
        events.append(OrderFulfilled.type)
    if command.kind == "delivered":
        locked.status = Order.Status.DELIVERED
        locked.delivered_at = command.occurred_at
        locked.save(update_fields=["status", "delivered_at", "updated_at"])
        event_bus.publish(
            OrderDelivered(
                tenant_id=locked.tenant_id,
                order_id=locked.id,
                tracking_number=tracking_number,
                delivered_at=command.occurred_at,
            )
        )
        events.append(OrderDelivered.type)
    elif command.kind == "lost":
        event_bus.publish(
            OrderShipmentLost(
                tenant_id=locked.tenant_id,
                order_id=locked.id,
                tracking_number=tracking_number,
                lost_at=command.occurred_at,
            )
        )
        events.append(OrderShipmentLost.type)
    logger.info("order %s: distributor's %s notice applied (%s)", locked.id, command.kind, ", ".join(events))
    return NoticeOutcome(status="applied", events=tuple(events))


# --- helpers ---------------------------------------------------------------------------------


def _locked(order: Order) -> Order:
    """The order's current row, locked until the transaction ends (a key-share lock is still
    allowed, so inserting rows that reference the order does not wait)."""
    return Order.objects.select_for_update(no_key=True).get(pk=order.pk)


def _fulfil(locked: Order, tracking_number: str, *, shipped_at=None) -> None:
    locked.status = Order.Status.FULFILLED
    locked.tracking_number = tracking_number
    locked.shipped_at = shipped_at or timezone.now()
    locked.save(update_fields=["status", "tracking_number", "shipped_at", "updated_at"])
    event_bus.publish(
        OrderFulfilled(
            tenant_id=locked.tenant_id,
            order_id=locked.id,
            tracking_number=tracking_number,
            shipped_at=locked.shipped_at,
            lines=_lines_of(locked.items.all()),
        )
    )


def _cancel(locked: Order, reason: str) -> None:
    previous_status = locked.status
    locked.status = Order.Status.CANCELLED
    locked.cancellation_reason = reason
    locked.save(update_fields=["status", "cancellation_reason", "updated_at"])
    event_bus.publish(
        OrderCancelled(
            tenant_id=locked.tenant_id,
            order_id=locked.id,
            reason=reason,
            previous_status=previous_status,
            lines=_lines_of(locked.items.all()),
            total_amount=locked.total_amount,
            currency=locked.currency,
        )
    )


def _check_reason(reason: str) -> None:
    if reason not in Order.CancellationReason.values:
        raise ApplicationError(
            f"Unknown cancellation reason {reason!r}.",
            extra={"reason": [f"One of {', '.join(Order.CancellationReason.values)}."]},
        )


def _may_act_on(user: User, order: Order) -> bool:
    if user.is_superuser and user.tenant_id is None:
        return True
    if user.tenant_id != order.tenant_id:
        return False
    return user.is_staff or user.pk == order.customer_id


def _lines_of(items: Iterable[OrderItem]) -> tuple[OrderLine, ...]:
    return tuple(OrderLine(sku=i.sku, title=i.title, quantity=i.quantity, unit_price=i.unit_price) for i in items)


def _keep_items(order: Order, items: list[OrderItem]) -> None:
    """Let `order.items.all()` return the lines just saved, as a prefetch would, without a query."""
    queryset = order.items.all()
    queryset._result_cache = items
    queryset._prefetch_done = True
    order._prefetched_objects_cache = {"items": queryset}
