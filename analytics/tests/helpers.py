"""Publishing the events the projections read, and running the projections, as relays would."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from django.db import transaction

from analytics.projections import SALES
from domain_events import tracking
from domain_events.bus import event_bus
from domain_events.events import OrderCancelled, OrderConfirmed, OrderFulfilled, OrderLine, OrderPlaced


def line(sku: str = "BOOK-1", quantity: int = 1, price: str = "10.00", title: str | None = None) -> OrderLine:
    return OrderLine(sku=sku, title=title or f"Title of {sku}", quantity=quantity, unit_price=Decimal(price))


class OrderStory:
    """One order's events, published one transaction each, as the orders module would."""

    def __init__(self, tenant, *lines: OrderLine, order_id: uuid.UUID | None = None) -> None:
        self.tenant = tenant
        self.order_id = order_id or uuid.uuid4()
        self.lines = lines or (line(),)
        self.total = sum((ln.unit_price * ln.quantity for ln in self.lines), Decimal("0.00"))

    def _publish(self, event):
        with transaction.atomic():
            return event_bus.publish(event)

    def placed(self, at: datetime | None = None) -> OrderStory:
        extra = {"occurred_at": at} if at else {}
        self._publish(
            OrderPlaced(
                tenant_id=self.tenant.id,
                order_id=self.order_id,
                customer_id=uuid.uuid4(),
                lines=self.lines,
                total_amount=self.total,
                currency="USD",
                payment_token="tok_visa",
                **extra,
            )
        )
        return self

    def confirmed(self) -> OrderStory:
        self._publish(
            OrderConfirmed(tenant_id=self.tenant.id, order_id=self.order_id, total_amount=self.total, currency="USD")
        )
        return self

    def cancelled(self, reason: str = "customer_request", previous_status: str = "placed") -> OrderStory:
        self._publish(
            OrderCancelled(
                tenant_id=self.tenant.id,
                order_id=self.order_id,
                reason=reason,
                previous_status=previous_status,
                lines=self.lines,
                total_amount=self.total,
                currency="USD",
            )
        )
        return self

    def fulfilled(self) -> OrderStory:
        from django.utils import timezone

        self._publish(
            OrderFulfilled(
                tenant_id=self.tenant.id,
                order_id=self.order_id,
                tracking_number="1Z",
                shipped_at=timezone.now(),
                lines=self.lines,
            )
        )
        return self


def project(name: str = SALES) -> int:
    """Number what committed and bring the live projection up to the head."""
    return tracking.catch_up(name)
