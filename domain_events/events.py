"""The domain events: the contracts between ShelfWise's modules.

Every event is a frozen, keyword-only dataclass. A concrete event names its `type` (docs/events.md),
its schema `version` and the field that holds its aggregate id; subclassing `DomainEvent` is all it
takes to be registered. Fields listed in `private_fields` stay inside the platform: they are
stored, but never leave the process in a CloudEvent.

Changing an event's fields means raising its `version` and registering an upcaster for the old
one in `domain_events.upcasters`, so that handlers only ever see the current shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import ClassVar
from uuid import UUID, uuid4

from pydantic import ConfigDict

from domain_events.registry import registry


def _now() -> datetime:
    return datetime.now(tz=UTC)


@dataclass(frozen=True, kw_only=True)
class ValueObject:
    """Base for the small immutable records that events carry (order lines, shortages)."""

    __pydantic_config__ = ConfigDict(extra="forbid")


@dataclass(frozen=True, kw_only=True)
class DomainEvent:
    """Something that happened, recorded in the outbox in the same transaction as the change."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    type: ClassVar[str]
    version: ClassVar[int] = 1
    aggregate_field: ClassVar[str]
    private_fields: ClassVar[frozenset[str]] = frozenset()

    tenant_id: UUID
    event_id: UUID = field(default_factory=uuid4)
    occurred_at: datetime = field(default_factory=_now)
    # Filled by `event_bus.publish` from the request or the handled event when left empty.
    correlation_id: str = ""
    causation_id: UUID | None = None
    # Who caused it (`domain_events.actors`): filled by `event_bus.publish` from the request, the
    # command or the handled event when left empty.
    actor: str = ""
    # The W3C `traceparent` of the span that published it, stored with it (`core.tracing`); None
    # when tracing is off.
    traceparent: str | None = None

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "type" in cls.__dict__:
            registry.register(cls)

    @property
    def aggregate_id(self) -> UUID:
        return getattr(self, self.aggregate_field)

    @classmethod
    def aggregate_type(cls) -> str:
        """What the aggregate is: its field's name without `_id` (`order`, `product`)."""
        return cls.aggregate_field.removesuffix("_id")


ENVELOPE_FIELDS = frozenset(
    {"tenant_id", "event_id", "occurred_at", "correlation_id", "causation_id", "actor", "traceparent"}
)


def published_event_types() -> list[type[DomainEvent]]:
    """The contract's event types (docs/events.md): those declared in this module, by type name.

    Events declared elsewhere (test probes) stay inside the platform: integrators can neither
    subscribe to them nor receive them.
    """
    return sorted((cls for cls in registry.types().values() if cls.__module__ == __name__), key=lambda c: c.type)


# --- Value objects ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class OrderLine(ValueObject):
    sku: str
    title: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True, kw_only=True)
class StockShortage(ValueObject):
    sku: str
    requested: int
    available: int


# --- orders ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class OrderPlaced(DomainEvent):
    type: ClassVar[str] = "order.placed"
    aggregate_field: ClassVar[str] = "order_id"
    private_fields: ClassVar[frozenset[str]] = frozenset({"payment_token"})

    order_id: UUID
    customer_id: UUID
    lines: tuple[OrderLine, ...]
    total_amount: Decimal
    currency: str
    payment_token: str


@dataclass(frozen=True, kw_only=True)
class OrderConfirmed(DomainEvent):
    type: ClassVar[str] = "order.confirmed"
    aggregate_field: ClassVar[str] = "order_id"

    order_id: UUID
    total_amount: Decimal
    currency: str


@dataclass(frozen=True, kw_only=True)
class OrderCancelled(DomainEvent):
    type: ClassVar[str] = "order.cancelled"
    aggregate_field: ClassVar[str] = "order_id"

    order_id: UUID
    reason: str
    previous_status: str
    lines: tuple[OrderLine, ...]
    total_amount: Decimal
    currency: str


@dataclass(frozen=True, kw_only=True)
class OrderFulfilled(DomainEvent):
    type: ClassVar[str] = "order.fulfilled"
    aggregate_field: ClassVar[str] = "order_id"

    order_id: UUID
    tracking_number: str
    shipped_at: datetime
    lines: tuple[OrderLine, ...]


@dataclass(frozen=True, kw_only=True)
class OrderDelivered(DomainEvent):
    """The distributor reports the fulfilled order delivered to the customer."""

    type: ClassVar[str] = "order.delivered"
    aggregate_field: ClassVar[str] = "order_id"

    order_id: UUID
    tracking_number: str
    delivered_at: datetime


@dataclass(frozen=True, kw_only=True)
class OrderShipmentLost(DomainEvent):
    """The distributor reports the order's shipment lost in transit; staff look into it."""

    type: ClassVar[str] = "order.shipment_lost"
    aggregate_field: ClassVar[str] = "order_id"

    order_id: UUID
    tracking_number: str
    lost_at: datetime


# --- inventory -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class InventoryReserved(DomainEvent):
    """All lines of an order are reserved (the order's reservation is the aggregate)."""

    type: ClassVar[str] = "inventory.reserved"
    aggregate_field: ClassVar[str] = "order_id"

    order_id: UUID
    lines: tuple[OrderLine, ...]


@dataclass(frozen=True, kw_only=True)
class InventoryReservationFailed(DomainEvent):
    type: ClassVar[str] = "inventory.reservation_failed"
    aggregate_field: ClassVar[str] = "order_id"

    order_id: UUID
    shortages: tuple[StockShortage, ...]


@dataclass(frozen=True, kw_only=True)
class StockAdjusted(DomainEvent):
    """Stock on hand changed outside an order (restock, initial stock, correction).

    v1 carried `delta` and no reason; see the upcaster in `domain_events.upcasters`.
    """

    type: ClassVar[str] = "inventory.stock_adjusted"
    version: ClassVar[int] = 2
    aggregate_field: ClassVar[str] = "product_id"

    product_id: UUID
    sku: str
    quantity_change: int
    on_hand: int
    reason: str


# --- payments --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PaymentCaptured(DomainEvent):
    """The order's payment was captured (the order's payment is the aggregate)."""

    type: ClassVar[str] = "payment.captured"
    aggregate_field: ClassVar[str] = "order_id"

    order_id: UUID
    payment_id: UUID
    amount: Decimal
    currency: str
    provider_reference: str


@dataclass(frozen=True, kw_only=True)
class PaymentFailed(DomainEvent):
    type: ClassVar[str] = "payment.failed"
    aggregate_field: ClassVar[str] = "order_id"

    order_id: UUID
    payment_id: UUID
    amount: Decimal
    currency: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class PaymentRefunded(DomainEvent):
    type: ClassVar[str] = "payment.refunded"
    aggregate_field: ClassVar[str] = "order_id"

    order_id: UUID
    payment_id: UUID
    amount: Decimal
    currency: str
    provider_reference: str
