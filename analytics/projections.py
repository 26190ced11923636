"""Projections: the only writers of the read models.

Each projection is a position reader (`event_bus.track`, subscribed in `apps.py`): it gets the
stored events in position order, in batches, and its writes commit with its checkpoint, so a
batch applies once and one order's events apply in the order they committed. A batch is one
transaction: the order summaries and product rows it touches are read in one query per table and
changed in memory, then every table is written back in one statement, in which the monthly, daily
and pending counters get their deltas added in SQL (`analytics.rows`). The live projection and a
rebuild run this same code, so they cannot disagree.

Rows also keep the position of the last event applied to them (`OrderSummary.position`,
`ProductSales.stock_position`), so an event offered again (a replay from an older checkpoint)
changes nothing.

`context.target` names the set of tables to write (`live`, or a rebuild's or check's own
generation, see `analytics.models.Generation`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import IntegrityError, models, transaction

from analytics.models import Generation, OrderSummary, ProductSales, TenantDay, TenantMonth, TenantTotals
from analytics.rows import Row, row_new, rows_get, rows_save
from domain_events.events import (
    DomainEvent,
    OrderCancelled,
    OrderConfirmed,
    OrderDelivered,
    OrderFulfilled,
    OrderLine,
    OrderPlaced,
    StockAdjusted,
)
from domain_events.subscriptions import BatchHandler
from domain_events.tracking import TrackingContext
from tenants.models import Tenant

CENT = Decimal("0.01")
PAID = ("confirmed", "fulfilled", "delivered")


@dataclass(frozen=True)
class Projection:
    """A named projection: the events it reads, the tables it writes and its batch handler."""

    name: str
    event_types: tuple[type[DomainEvent], ...]
    models: tuple[type[models.Model], ...]
    handler: BatchHandler
    batch_size: int = 500


# --- generations -----------------------------------------------------------------------------


def generation_for(*, projection: str, target: str) -> int:
    """The generation that `target` of `projection` writes; the live one is made on first use."""
    found = Generation.objects.filter(projection=projection, target=target).values_list("id", flat=True).first()
    if found is not None:
        return found
    if target != "live":
        raise LookupError(f"{projection}: no generation is being built for {target!r}")
    try:
        with transaction.atomic():
            return Generation.objects.create(projection=projection, target=target).id
    except IntegrityError:
        # Another process made it first.
        return Generation.objects.get(projection=projection, target=target).id


# --- the sales projection --------------------------------------------------------------------


def _money(value: Decimal) -> Decimal:
    return Decimal(value).quantize(CENT)


def _top_line(lines: Sequence[OrderLine]) -> OrderLine:
    """The line with the most units; the dearer line, then the lower sku, breaks a tie."""
    return min(lines, key=lambda line: (-line.quantity, -(line.unit_price * line.quantity), line.sku))


def _zones(tenant_ids: Iterable[UUID]) -> dict[UUID, ZoneInfo]:
    zones: dict[UUID, ZoneInfo] = {}
    for tenant_id, name in Tenant.objects.filter(id__in=set(tenant_ids)).values_list("id", "timezone"):
        try:
            zones[tenant_id] = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            zones[tenant_id] = ZoneInfo("UTC")
    return zones


class _SalesBatch:
    """One batch of the sales projection: loads what it touches, applies events, writes back.

    Rows are plain dicts (`analytics.rows`): an order summary is read once per batch however many
    of its events the batch holds, and each table is written back in one statement.
    """

    def __init__(self, generation: int, events: Sequence[DomainEvent]) -> None:
        self.generation = generation
        orders = {(e.order_id,) for e in events if not isinstance(e, StockAdjusted)}
        stored = rows_get(OrderSummary, generation=generation, keys=orders)
        self.summaries: dict[UUID, Row] = {order_id: row for (order_id,), row in stored.items()}
        self.changed: set[UUID] = set()
        # Only a placement needs its tenant's timezone (the local day it counts in).
        self.zones = _zones(e.tenant_id for e in events if isinstance(e, OrderPlaced))
        self.months: dict[tuple[UUID, date], dict[str, Any]] = defaultdict(lambda: defaultdict(int))
        self.days: dict[tuple[UUID, date], dict[str, Any]] = defaultdict(lambda: defaultdict(int))
        self.totals: dict[tuple[UUID], dict[str, Any]] = defaultdict(lambda: defaultdict(int))
        self.products: dict[tuple[UUID, str], dict[str, Any]] = defaultdict(lambda: defaultdict(int))
        self.titles: dict[tuple[UUID, str], str] = {}
        self.stock: list[tuple[tuple[UUID, str], int, StockAdjusted]] = []

    def _local_date(self, tenant_id: UUID, moment: datetime) -> date:
        return moment.astimezone(self.zones.get(tenant_id, ZoneInfo("UTC"))).date()

    def apply(self, event: DomainEvent, position: int) -> None:
        if isinstance(event, StockAdjusted):
            self.stock.append(((event.tenant_id, event.sku), position, event))
            return
        summary = self.summaries.get(event.order_id)
        if summary is not None and position <= summary["position"]:
            return  # applied before
        if isinstance(event, OrderPlaced):
            if summary is None:
                self._placed(event, position)
            return
        if summary is None:
            return  # an order placed before this projection's events began
        status, tenant_id = summary["status"], summary["tenant_id"]
        if isinstance(event, OrderConfirmed) and status == "placed":
            self._paid(summary, +1)
            self.totals[(tenant_id,)]["pending_fulfillment"] += 1
            summary.update(status="confirmed", confirmed_at=event.occurred_at)
        elif isinstance(event, OrderCancelled) and status in ("placed", "confirmed"):
            if status == "confirmed":
                self._paid(summary, -1)
                self.totals[(tenant_id,)]["pending_fulfillment"] -= 1
            self.months[(tenant_id, summary["placed_on"].replace(day=1))]["cancelled"] += 1
            summary.update(status="cancelled", cancelled_at=event.occurred_at, cancellation_reason=event.reason)
        elif isinstance(event, OrderFulfilled) and status == "confirmed":
            self.totals[(tenant_id,)]["pending_fulfillment"] -= 1
            summary.update(status="fulfilled", fulfilled_at=event.occurred_at)
        elif isinstance(event, OrderDelivered) and status == "fulfilled":
            # Still paid and already shipped: only where the order stands changes.
            summary.update(status="delivered")
        summary["position"] = position
        self.changed.add(event.order_id)

    def _placed(self, event: OrderPlaced, position: int) -> None:
        placed_on = self._local_date(event.tenant_id, event.occurred_at)
        top = _top_line(event.lines)
        self.summaries[event.order_id] = {
            "order_id": event.order_id,
            "tenant_id": event.tenant_id,
            "customer_id": event.customer_id,
            "status": "placed",
            "cancellation_reason": "",
            "item_count": sum(line.quantity for line in event.lines),
            "total_amount": _money(event.total_amount),
            "currency": event.currency,
            "top_item_sku": top.sku,
            "top_item_title": top.title,
            "lines": [
                {"sku": line.sku, "title": line.title, "quantity": line.quantity, "unit_price": str(line.unit_price)}
                for line in event.lines
            ],
            "placed_at": event.occurred_at,
            "placed_on": placed_on,
            "confirmed_at": None,
            "fulfilled_at": None,
            "cancelled_at": None,
            "position": position,
        }
        self.changed.add(event.order_id)
        self.months[(event.tenant_id, placed_on.replace(day=1))]["orders"] += 1
        self.days[(event.tenant_id, placed_on)]["orders"] += 1

    def _paid(self, summary: Row, sign: int) -> None:
        """Add (or, with sign -1, take back) a paid order's money and units."""
        tenant_id, placed_on = summary["tenant_id"], summary["placed_on"]
        amount = sign * summary["total_amount"]
        month = self.months[(tenant_id, placed_on.replace(day=1))]
        month["paid_orders"] += sign
        month["revenue"] += amount
        self.days[(tenant_id, placed_on)]["revenue"] += amount
        for line in summary["lines"]:
            key = (tenant_id, line["sku"])
            product = self.products[key]
            product["units"] += sign * line["quantity"]
            product["revenue"] += sign * _money(Decimal(line["unit_price"]) * line["quantity"])
            self.titles[key] = line["title"]

    # --- writing back ------------------------------------------------------------------------

    def save(self) -> None:
        summaries = [self.summaries[o] for o in self.changed]
        counters = [(TenantMonth, self.months, None), (TenantDay, self.days, None), (TenantTotals, self.totals, None)]
        if self.stock:
            # A stock adjustment applies once (`stock_position`): the products are read first.
            writes = [(OrderSummary, summaries), (ProductSales, self._products())]
            rows_save(generation=self.generation, writes=writes, adds=counters)
            return
        # Sales alone are added to the products' figures, without a read.
        sold = {key: {**changes, "title": self.titles[key]} for key, changes in self.products.items()}
        rows_save(
            generation=self.generation,
            writes=[(OrderSummary, summaries)],
            adds=[*counters, (ProductSales, sold, ("units", "revenue"))],
        )

    def _products(self) -> list[Row]:
        """The product rows this batch changed, with their new values."""
        keys = set(self.products) | {key for key, _, _ in self.stock}
        stored = rows_get(ProductSales, generation=self.generation, keys=keys)
        rows = {key: stored.get(key) or row_new(ProductSales, key) for key in keys}
        for key, changes in self.products.items():
            row = rows[key]
            row["units"] += changes["units"]
            row["revenue"] += changes["revenue"]
            row["title"] = self.titles.get(key, row["title"])
        for key, position, event in self.stock:
            row = rows[key]
            if position <= row["stock_position"]:
                continue
            row["restocked"] += max(0, event.quantity_change)
            row["on_hand"] = event.on_hand
            row["stock_position"] = position
        return list(rows.values())


# The generation each reader's last batch wrote, by (projection, target): the next batch of the
# same reader writes it too, unless something else moved the checkpoint meanwhile (a rebuild's swap
# moves the live one), see `TrackingContext.resumes`.
_generations: dict[tuple[str, str], int] = {}


def project_sales(events: Sequence[DomainEvent], context: TrackingContext) -> None:
    """Apply a batch of order and stock events to the order summaries and the sales figures."""
    key = (context.name, context.target)
    generation = _generations.get(key) if context.resumes else None
    if generation is None:
        generation = _generations[key] = generation_for(projection=context.name, target=context.target)
    batch = _SalesBatch(generation, events)
    for event in events:
        batch.apply(event, context.positions[event.event_id])
    batch.save()


# --- the registry ----------------------------------------------------------------------------

SALES = "analytics.sales"

PROJECTIONS: dict[str, Projection] = {
    SALES: Projection(
        name=SALES,
        event_types=(OrderPlaced, OrderConfirmed, OrderCancelled, OrderFulfilled, OrderDelivered, StockAdjusted),
        models=(OrderSummary, TenantMonth, TenantDay, TenantTotals, ProductSales),
        handler=project_sales,
    ),
}
