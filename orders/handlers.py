"""Reactions to other modules' events: thin, each calls one service.

They run on commit in the process that recorded the event (a relay makes good any that were
missed); the order row is locked by the service, so a reaction and a customer's request on the
same order never interleave.
"""

from __future__ import annotations

from domain_events.events import InventoryReservationFailed, PaymentCaptured, PaymentFailed
from orders import selectors, services
from orders.models import Order


def confirm_order(event: PaymentCaptured) -> None:
    """The payment is captured (so the stock is reserved): the order is confirmed."""
    order = selectors.order_get(tenant_id=event.tenant_id, order_id=event.order_id)
    services.order_confirm(order=order)


def cancel_order_out_of_stock(event: InventoryReservationFailed) -> None:
    """Not enough stock for the order: it is cancelled as out of stock, unless it is already closed."""
    order = selectors.order_get(tenant_id=event.tenant_id, order_id=event.order_id)
    services.order_cancel_if_open(order=order, reason=Order.CancellationReason.OUT_OF_STOCK)


def cancel_order_payment_declined(event: PaymentFailed) -> None:
    """The payment was declined: the order is cancelled, unless it is already closed."""
    order = selectors.order_get(tenant_id=event.tenant_id, order_id=event.order_id)
    services.order_cancel_if_open(order=order, reason=Order.CancellationReason.PAYMENT_DECLINED)
