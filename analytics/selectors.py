"""Reads of the analytics module: the dashboard (read models only), the events feed and an
order's timeline (stored events and their deliveries, scoped by the events' own tenant)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import connection
from django.db.models import CharField, DateField, OuterRef, Subquery, Value
from django.utils import timezone

from analytics.models import Generation, ProductSales, TenantDay, TenantMonth, TenantTotals
from analytics.projections import SALES
from core.replica import REPLICA, one_snapshot, primary_position, reading_from, reads_from_primary, reads_from_replica
from domain_events.cloudevents import to_cloudevent
from domain_events.head import settled_head
from domain_events.models import Checkpoint, StoredEvent
from domain_events.registry import registry
from domain_events.selectors import aggregate_timeline

if TYPE_CHECKING:
    from tenants.models import Tenant

CENT = Decimal("0.01")
TOP_PRODUCTS = 5


@dataclass(frozen=True)
class Dashboard:
    orders_this_month: int
    revenue_this_month: Decimal
    pending_fulfillment: int
    cancelled_this_month: int
    average_order_value: Decimal
    top_products: list[dict[str, Any]]
    daily_revenue: list[dict[str, Any]]
    updated_at: datetime | None
    position: int


def tenant_today(*, tenant: Tenant, now: datetime | None = None) -> date:
    """Today in the tenant's timezone: a month rolls over at the tenant's local midnight."""
    try:
        zone = ZoneInfo(tenant.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return (now or timezone.now()).astimezone(zone).date()


def _month_figure(field: str, tenant_id: UUID, month: date) -> Subquery:
    return Subquery(
        TenantMonth.objects.filter(generation=OuterRef("id"), tenant_id=tenant_id, month=month).values(field)[:1]
    )


def dashboard_get(*, tenant: Tenant, now: datetime | None = None) -> Dashboard:
    """The tenant's figures of this month (in its timezone), from the live read models only.

    Two indexed queries: the live generation with its checkpoint and this month's row, then the
    top products and this month's days. `position` is the last event the figures include, read
    with them from the same server (on a replica, both queries in one snapshot).
    """
    with one_snapshot():
        return _dashboard(tenant, now)


def _dashboard(tenant: Tenant, now: datetime | None) -> Dashboard:
    today = tenant_today(tenant=tenant, now=now)
    month = today.replace(day=1)
    head = (
        Generation.objects.filter(projection=SALES, target="live")
        .annotate(
            position=Subquery(Checkpoint.objects.filter(name=OuterRef("projection")).values("position")[:1]),
            updated_at=Subquery(Checkpoint.objects.filter(name=OuterRef("projection")).values("updated_at")[:1]),
            orders=_month_figure("orders", tenant.id, month),
            paid_orders=_month_figure("paid_orders", tenant.id, month),
            cancelled=_month_figure("cancelled", tenant.id, month),
            revenue=_month_figure("revenue", tenant.id, month),
            pending=Subquery(
                TenantTotals.objects.filter(generation=OuterRef("id"), tenant_id=tenant.id).values(
                    "pending_fulfillment"
                )[:1]
            ),
        )
        .values("id", "position", "updated_at", "orders", "paid_orders", "cancelled", "revenue", "pending")
        .first()
    )
    if head is None:
        zero = Decimal("0.00")
        return Dashboard(0, zero, 0, 0, zero, [], [], None, 0)
    revenue = (head["revenue"] or Decimal(0)).quantize(CENT)
    paid = head["paid_orders"] or 0
    top, days = _products_and_days(head["id"], tenant.id, month, today)
    return Dashboard(
        orders_this_month=head["orders"] or 0,
        revenue_this_month=revenue,
        pending_fulfillment=head["pending"] or 0,
        cancelled_this_month=head["cancelled"] or 0,
        average_order_value=(revenue / paid).quantize(CENT) if paid else Decimal("0.00"),
        top_products=top,
        daily_revenue=days,
        updated_at=head["updated_at"],
        position=head["position"] or 0,
    )


def _products_and_days(
    generation: int, tenant_id: UUID, month: date, today: date
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The top products and this month's days, in one statement where the database allows it."""
    top = (
        ProductSales.objects.filter(generation=generation, tenant_id=tenant_id, units__gt=0)
        .order_by("-units", "-revenue", "sku")
        .values_list(
            Value("product", output_field=CharField()),
            "sku",
            "title",
            "units",
            "revenue",
            Value(None, output_field=DateField()),
        )[:TOP_PRODUCTS]
    )
    days = (
        TenantDay.objects.filter(generation=generation, tenant_id=tenant_id, day__gte=month, day__lte=today)
        .order_by("day")
        .values_list(
            Value("day", output_field=CharField()),
            Value("", output_field=CharField()),
            Value("", output_field=CharField()),
            "orders",
            "revenue",
            "day",
        )
    )
    if connection.features.supports_slicing_ordering_in_compound:
        rows = list(top.union(days, all=True))
    else:
        rows = list(top) + list(days)
    products = [
        {"sku": sku, "title": title, "units": units, "revenue": Decimal(revenue).quantize(CENT)}
        for kind, sku, title, units, revenue, _ in rows
        if kind == "product"
    ]
    products.sort(key=lambda p: (-p["units"], -p["revenue"], p["sku"]))
    daily = [
        {"date": day, "orders": orders, "revenue": Decimal(revenue).quantize(CENT)}
        for kind, _, _, orders, revenue, day in rows
        if kind == "day"
    ]
    daily.sort(key=lambda d: d["date"])
    return products, daily


def daily_revenue_for(*, tenant: Tenant, days: int = 30, now: datetime | None = None) -> list[dict[str, Any]]:
    """Orders and revenue of each of the tenant's last `days` local days, today included and
    oldest first, with the days that sold nothing as zeros; from the live read models (one query)."""
    today = tenant_today(tenant=tenant, now=now)
    first = today - timedelta(days=days - 1)
    live = Generation.objects.filter(projection=SALES, target="live").values("id")[:1]
    rows = TenantDay.objects.filter(
        generation=Subquery(live), tenant_id=tenant.id, day__gte=first, day__lte=today
    ).values_list("day", "orders", "revenue")
    sold = {day: (orders, Decimal(revenue).quantize(CENT)) for day, orders, revenue in rows}
    nothing = (0, Decimal("0.00"))
    calendar = [first + timedelta(days=n) for n in range(days)]
    return [
        {"date": day, "orders": sold.get(day, nothing)[0], "revenue": sold.get(day, nothing)[1]} for day in calendar
    ]


# --- the events feed ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EventPage:
    events: list[dict[str, Any]]  # CloudEvents, each with its `position`
    remaining: int  # events of the tenant after `after`, this page included


# How long a page waits for positions drawn by transactions still open to become final; past it,
# the page ends at the head as it is (safe, only shorter).
FEED_HEAD_WAIT = 1.0


def event_feed_for(*, tenant_id: UUID, after: int, limit: int) -> EventPage:
    """The tenant's events after position `after`, in position order, as CloudEvents.

    Only events up to the readers' head are listed (`domain_events.head`: no event below it can
    still commit), so a client that asks again from the last position it got never misses or
    repeats an event, even one whose transaction committed after a later position's. The head is
    the primary's; a replica answers only once it has replayed everything below it.
    """
    top = settled_head(timeout=FEED_HEAD_WAIT)
    with reads_from_replica(replayed=primary_position()):
        stored = StoredEvent.objects.filter(tenant_id=tenant_id, position__gt=after, position__lte=top)
        rows = list(stored.order_by("position")[:limit])
        remaining = len(rows) if len(rows) < limit else stored.count()
    events = []
    for row in rows:
        event = registry.load(row.type, row.version, row.payload, envelope=row.envelope(), ref=row.ref)
        events.append({**to_cloudevent(event, position=row.position), "position": row.position})
    return EventPage(events, remaining)


# --- an order's timeline -----------------------------------------------------------------------


def order_timeline_for(*, tenant_id: UUID, order_id: UUID) -> list[StoredEvent]:
    """Every committed event of the order (its aggregate id) in position order, with the deliveries
    still on record; empty for another tenant's order or an unknown one.

    An order the replica does not know yet (placed a moment ago) is looked up on the primary."""
    events = aggregate_timeline(tenant_id=tenant_id, aggregate_id=order_id)
    if not events and reading_from() == REPLICA:
        with reads_from_primary():
            events = aggregate_timeline(tenant_id=tenant_id, aggregate_id=order_id)
    return events
