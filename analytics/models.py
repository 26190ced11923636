"""Read models: denormalized figures written only by projections (`analytics.projections`).

Every read-model row belongs to a `generation`. The live figures are the generation a
`Generation` row points to with target `live`; a rebuild fills a new generation beside them and
the swap only moves that pointer (one short transaction), so readers see either the old figures
or the new ones, never a mixture. Keys start with the generation, so every read is an index lookup.

An order belongs to the month and day it was placed, in its tenant's timezone. Revenue counts
paid orders (confirmed or fulfilled); a cancelled order's money leaves the figures again.
"""

from __future__ import annotations

from django.db import models

MONEY = {"max_digits": 14, "decimal_places": 2}


class Generation(models.Model):
    """One set of read-model rows of a projection, and which role it plays (`target`).

    `target` is the tracking target that writes it (`live`, `rebuild`, `check`), or `retired`
    plus its id once a rebuild replaced it (kept until the next rebuild, so a read that began
    before the swap still finishes on it).
    """

    id = models.BigAutoField(primary_key=True)
    projection = models.CharField(max_length=100)
    target = models.CharField(max_length=50)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["projection", "target"], name="generation_one_per_target")]

    def __str__(self) -> str:
        return f"{self.projection} #{self.id} ({self.target})"


class OrderSummary(models.Model):
    """One row per order: where it stands and what it is worth."""

    generation = models.BigIntegerField()
    order_id = models.UUIDField()
    tenant_id = models.UUIDField()
    customer_id = models.UUIDField()
    status = models.CharField(max_length=16)
    cancellation_reason = models.CharField(max_length=32, blank=True, default="")
    item_count = models.PositiveIntegerField()
    total_amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    top_item_sku = models.CharField(max_length=64)
    top_item_title = models.CharField(max_length=255)
    # The lines as placed: what a confirmation adds to the product sales.
    lines = models.JSONField()
    placed_at = models.DateTimeField()
    placed_on = models.DateField()  # in the tenant's timezone
    confirmed_at = models.DateTimeField(null=True, blank=True)
    fulfilled_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    # The last event of the order applied here: an event at or below it is not applied again.
    position = models.BigIntegerField()

    class Meta:
        verbose_name_plural = "order summaries"
        constraints = [models.UniqueConstraint(fields=["generation", "order_id"], name="ordersummary_key")]
        indexes = [models.Index(fields=["generation", "tenant_id", "placed_at"], name="ordersummary_tenant_placed")]

    def __str__(self) -> str:
        return f"{self.order_id} ({self.status})"


class TenantMonth(models.Model):
    """A tenant's figures for one month (first day of the month, in the tenant's timezone)."""

    generation = models.BigIntegerField()
    tenant_id = models.UUIDField()
    month = models.DateField()
    orders = models.PositiveIntegerField(default=0)
    paid_orders = models.PositiveIntegerField(default=0)
    cancelled = models.PositiveIntegerField(default=0)
    revenue = models.DecimalField(**MONEY, default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["generation", "tenant_id", "month"], name="tenantmonth_key")]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.month:%Y-%m}"


class TenantDay(models.Model):
    """A tenant's orders and revenue of one local day."""

    generation = models.BigIntegerField()
    tenant_id = models.UUIDField()
    day = models.DateField()
    orders = models.PositiveIntegerField(default=0)
    revenue = models.DecimalField(**MONEY, default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["generation", "tenant_id", "day"], name="tenantday_key")]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.day}"


class TenantTotals(models.Model):
    """A tenant's figures that belong to no period: orders confirmed and not yet shipped."""

    generation = models.BigIntegerField()
    tenant_id = models.UUIDField()
    pending_fulfillment = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "tenant totals"
        constraints = [models.UniqueConstraint(fields=["generation", "tenant_id"], name="tenanttotals_key")]

    def __str__(self) -> str:
        return str(self.tenant_id)


class ProductSales(models.Model):
    """Per product (sku): units and revenue of paid orders, and the stock that came in."""

    generation = models.BigIntegerField()
    tenant_id = models.UUIDField()
    sku = models.CharField(max_length=64)
    title = models.CharField(max_length=255, blank=True, default="")
    units = models.PositiveIntegerField(default=0)
    revenue = models.DecimalField(**MONEY, default=0)
    restocked = models.PositiveIntegerField(default=0)
    on_hand = models.IntegerField(null=True, blank=True)
    # The last stock adjustment applied here (adjustments are not unique per product otherwise).
    stock_position = models.BigIntegerField(default=0)

    class Meta:
        verbose_name_plural = "product sales"
        constraints = [models.UniqueConstraint(fields=["generation", "tenant_id", "sku"], name="productsales_key")]
        indexes = [
            models.Index(fields=["generation", "tenant_id", "-units", "-revenue", "sku"], name="productsales_top"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.sku}"
