"""Projections: the only writers of the read models.

Each projection is a position reader (`event_bus.track`, subscribed in `apps.py`): it gets the
stored events in position order, in batches, and its writes commit with its checkpoint, so a
batch applies once and one order's events apply in the order they committed. A batch is one
transaction: the rows it touches are read in a few queries, changed in memory, and written back
with one upsert per table.

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
from domain_events.events import (
    DomainEvent,
    OrderCancelled,
    OrderConfirmed,
    OrderFulfilled,
    OrderLine,
    OrderPlaced,
    StockAdjusted,
)
from domain_events.subscriptions import BatchHandler
from domain_events.tracking import TrackingContext
from tenants.models import Tenant

CENT = Decimal("0.01")
PAID = ("confirmed", "fulfilled")


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
    """One batch of the sales projection: loads what it touches, applies events, writes back."""

    def __init__(self, generation: int, events: Sequence[DomainEvent]) -> None:
        self.generation = generation
        order_ids = {e.order_id for e in events if not isinstance(e, StockAdjusted)}
        self.summaries: dict[UUID, OrderSummary] = {
            s.order_id: s for s in OrderSummary.objects.filter(generation=generation, order_id__in=order_ids)
        }
        self.changed: set[UUID] = set()
        self.zones = _zones(e.tenant_id for e in events)
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
        if summary is not None and position <= summary.position:
            return  # applied before
        if isinstance(event, OrderPlaced):
            if summary is None:
                self._placed(event, position)
            return
        if summary is None:
            return  # an order placed before this projection's events began
        if isinstance(event, OrderConfirmed) and summary.status == "placed":
            self._paid(summary, +1)
            self.totals[(summary.tenant_id,)]["pending_fulfillment"] += 1
            summary.status, summary.confirmed_at = "confirmed", event.occurred_at
        elif isinstance(event, OrderCancelled) and summary.status in ("placed", "confirmed"):
            if summary.status == "confirmed":
                self._paid(summary, -1)
                self.totals[(summary.tenant_id,)]["pending_fulfillment"] -= 1
            self.months[(summary.tenant_id, summary.placed_on.replace(day=1))]["cancelled"] += 1
            summary.status, summary.cancelled_at = "cancelled", event.occurred_at
            summary.cancellation_reason = event.reason
        elif isinstance(event, OrderFulfilled) and summary.status == "confirmed":
            self.totals[(summary.tenant_id,)]["pending_fulfillment"] -= 1
            summary.status, summary.fulfilled_at = "fulfilled", event.occurred_at
        summary.position = position
        self.changed.add(summary.order_id)

    def _placed(self, event: OrderPlaced, position: int) -> None:
        placed_on = self._local_date(event.tenant_id, event.occurred_at)
        top = _top_line(event.lines)
        self.summaries[event.order_id] = OrderSummary(
            generation=self.generation,
            order_id=event.order_id,
            tenant_id=event.tenant_id,
            customer_id=event.customer_id,
            status="placed",
            item_count=sum(line.quantity for line in event.lines),
            total_amount=_money(event.total_amount),
            currency=event.currency,
            top_item_sku=top.sku,
            top_item_title=top.title,
            lines=[
                {"sku": line.sku, "title": line.title, "quantity": line.quantity, "unit_price": str(line.unit_price)}
                for line in event.lines
            ],
            placed_at=event.occurred_at,
            placed_on=placed_on,
            position=position,
        )
        self.changed.add(event.order_id)
        self.months[(event.tenant_id, placed_on.replace(day=1))]["orders"] += 1
        self.days[(event.tenant_id, placed_on)]["orders"] += 1

    def _paid(self, summary: OrderSummary, sign: int) -> None:
        """Add (or, with sign -1, take back) a paid order's money and units."""
        amount = sign * summary.total_amount
        month = self.months[(summary.tenant_id, summary.placed_on.replace(day=1))]
        month["paid_orders"] += sign
        month["revenue"] += amount
        self.days[(summary.tenant_id, summary.placed_on)]["revenue"] += amount
        for line in summary.lines:
            key = (summary.tenant_id, line["sku"])
            self.products[key]["units"] += sign * line["quantity"]
            self.products[key]["revenue"] += sign * _money(Decimal(line["unit_price"]) * line["quantity"])
            self.titles[key] = line["title"]

    # --- writing back ------------------------------------------------------------------------

    def save(self) -> None:
        if self.changed:
            rows = [self.summaries[order_id] for order_id in self.changed]
            _upsert(OrderSummary, rows, ("generation", "order_id"))
        self._add(TenantMonth, ("tenant_id", "month"), self.months)
        self._add(TenantDay, ("tenant_id", "day"), self.days)
        self._add(TenantTotals, ("tenant_id",), self.totals)
        self._save_products()

    def _existing(self, model: type[models.Model], key_fields: tuple[str, ...], keys: Iterable[tuple]) -> dict:
        keys = set(keys)
        lookups = {f"{field}__in": {key[i] for key in keys} for i, field in enumerate(key_fields)}
        rows = model.objects.filter(generation=self.generation, **lookups)
        found = {tuple(getattr(row, f) for f in key_fields): row for row in rows}
        return {
            key: found.get(key) or model(generation=self.generation, **dict(zip(key_fields, key, strict=True)))
            for key in keys
        }

    def _add(self, model: type[models.Model], key_fields: tuple[str, ...], deltas: dict[tuple, dict]) -> None:
        if not deltas:
            return
        rows = self._existing(model, key_fields, deltas)
        for key, changes in deltas.items():
            for field, delta in changes.items():
                setattr(rows[key], field, getattr(rows[key], field) + delta)
        _upsert(model, rows.values(), ("generation", *key_fields))

    def _save_products(self) -> None:
        keys = set(self.products) | {key for key, _, _ in self.stock}
        if not keys:
            return
        rows = self._existing(ProductSales, ("tenant_id", "sku"), keys)
        for key, changes in self.products.items():
            row = rows[key]
            row.units += changes["units"]
            row.revenue += changes["revenue"]
            row.title = self.titles.get(key, row.title)
        for key, position, event in self.stock:
            row = rows[key]
            if position <= row.stock_position:
                continue
            row.restocked += max(0, event.quantity_change)
            row.on_hand = event.on_hand
            row.stock_position = position
        _upsert(ProductSales, rows.values(), ("generation", "tenant_id", "sku"))


def _upsert(model: type[models.Model], rows: Iterable[models.Model], unique_fields: tuple[str, ...]) -> None:
    """One INSERT … ON CONFLICT (key) DO UPDATE for all rows."""
    fields = [f.name for f in model._meta.concrete_fields if not f.primary_key and f.name not in unique_fields]
    model.objects.bulk_create(list(rows), update_conflicts=True, unique_fields=unique_fields, update_fields=fields)


def project_sales(events: Sequence[DomainEvent], context: TrackingContext) -> None:
    """Apply a batch of order and stock events to the order summaries and the sales figures."""
    batch = _SalesBatch(generation_for(projection=context.name, target=context.target), events)
    for event in events:
        batch.apply(event, context.positions[event.event_id])
    batch.save()


# --- the registry ----------------------------------------------------------------------------

SALES = "analytics.sales"

PROJECTIONS: dict[str, Projection] = {
    SALES: Projection(
        name=SALES,
        event_types=(OrderPlaced, OrderConfirmed, OrderCancelled, OrderFulfilled, StockAdjusted),
        models=(OrderSummary, TenantMonth, TenantDay, TenantTotals, ProductSales),
        handler=project_sales,
    ),
}
