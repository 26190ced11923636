"""Reactions to other modules' events: thin, each calls one service.

Capture and refund talk to the provider, so they run in Celery workers (queue `payments`) with no
transaction of the executor open (`atomic=False`); the handled event's id is their idempotency
key, which stays the same on every redelivery.
"""

from __future__ import annotations

from domain_events.events import InventoryReserved, OrderCancelled, OrderPlaced
from payments import services


def register_payment_for_order(event: OrderPlaced) -> None:
    """A placed order's payment becomes pending, with the customer's token."""
    services.payment_register_for_order(
        tenant_id=event.tenant_id,
        order_id=event.order_id,
        amount=event.total_amount,
        currency=event.currency,
        payment_token=event.payment_token,
    )


def capture_payment_for_order(event: InventoryReserved) -> None:
    """Stock is reserved: capture the order's payment."""
    services.payment_capture_for_order(
        tenant_id=event.tenant_id, order_id=event.order_id, idempotency_key=str(event.event_id)
    )


def void_or_refund_cancelled_order(event: OrderCancelled) -> None:
    """A cancelled order's payment is voided, or refunded if it was captured."""
    services.payment_void_or_refund_for_cancelled_order(
        tenant_id=event.tenant_id,
        order_id=event.order_id,
        amount=event.total_amount,
        currency=event.currency,
        idempotency_key=str(event.event_id),
    )
