"""The read side on the staff dashboard: this month's figures (those of `GET dashboard/`), and the
charts of the last 30 days' revenue and of the top products, drawn here as SVG (no script, no asset
from anywhere)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from analytics.selectors import daily_revenue_for, dashboard_get

if TYPE_CHECKING:
    from tenants.models import Tenant

CHART_DAYS = 30


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # shown on hover
    tick: str  # shown under the bar, or ""


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    gridlines: list[tuple[float, str]]  # (y, label)
    baseline: float
    left: int
    right: int


def revenue_chart(days: list[dict[str, Any]], currency: str) -> Chart:
    """One bar per day, scaled to the best day; a tick every fifth day and on the last one."""
    width, height, left, right, top, bottom = 900, 220, 64, 24, 10, 22
    plot_height = height - top - bottom
    highest = max((day["revenue"] for day in days), default=Decimal(0)) or Decimal(1)
    slot = (width - left - right) / max(len(days), 1)
    bars = []
    for n, day in enumerate(days):
        bar_height = float(day["revenue"] / highest) * plot_height
        last = n == len(days) - 1
        bars.append(
            Bar(
                x=round(left + n * slot + slot * 0.15, 1),
                y=round(top + plot_height - bar_height, 1),
                width=round(slot * 0.7, 1),
                height=round(bar_height, 1),
                label=f"{day['date']:%a %d %b}: {day['orders']} order(s), {day['revenue']:,.2f} {currency}",
                tick=f"{day['date']:%d %b}" if (len(days) - 1 - n) % 5 == 0 or last else "",
            )
        )
    gridlines = [
        (round(top + plot_height * (1 - share), 1), f"{highest * Decimal(share):,.0f}") for share in (0, 0.5, 1)
    ]
    return Chart(width, height, bars, gridlines, top + plot_height, left, right)


@admin.site.dashboard_panel(order=10)
def figures_this_month(request: HttpRequest, tenant: Tenant) -> SafeString:
    """The figures of `GET dashboard/`, and the charts of the last 30 days and the top products."""
    figures = dashboard_get(tenant=tenant)
    days = daily_revenue_for(tenant=tenant, days=CHART_DAYS)
    most_units = max((p["units"] for p in figures.top_products), default=1) or 1
    products = [{**p, "share": round(100 * p["units"] / most_units, 1)} for p in figures.top_products]
    return render_to_string(
        "analytics/admin/dashboard.html",
        {
            "figures": figures,
            "currency": tenant.currency,
            "chart": revenue_chart(days, tenant.currency),
            "days_total": sum((d["revenue"] for d in days), Decimal("0.00")),
            "top_products": products,
        },
        request=request,
    )
