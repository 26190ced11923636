"""Orders and their lines.

An order copies each line's title and price from the catalog when it is placed; it never points
at inventory's rows (modules share no tables), so an order reads the same however the catalog
changes later.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from tenants.models import Tenant

SKU_MAX_LENGTH = 64
TITLE_MAX_LENGTH = 255
MAX_QUANTITY = 10_000
TRACKING_NUMBER_MAX_LENGTH = 100


class Order(models.Model):
    """A customer's order; its row is the aggregate of the `order.*` events."""

    class Status(models.TextChoices):
        PLACED = "placed"
        CONFIRMED = "confirmed"
        FULFILLED = "fulfilled"
        DELIVERED = "delivered"
        CANCELLED = "cancelled"

    class CancellationReason(models.TextChoices):
        OUT_OF_STOCK = "out_of_stock", "Out of stock"
        PAYMENT_DECLINED = "payment_declined", "Payment declined"
        CUSTOMER_REQUEST = "customer_request", "Customer request"

    # What a cancellation may still stop: an order neither shipped (or delivered) nor already cancelled.
    CANCELLABLE = frozenset({Status.PLACED, Status.CONFIRMED})

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # The composite indexes below start with the tenant; a single-column one would be redundant.
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="orders", db_index=False)
    customer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PLACED)
    cancellation_reason = models.CharField(max_length=32, choices=CancellationReason.choices, blank=True, default="")
    total_amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    tracking_number = models.CharField(max_length=TRACKING_NUMBER_MAX_LENGTH, blank=True, default="")
    shipped_at = models.DateTimeField(null=True, blank=True)
    # When the distributor reported it delivered (its notice's time).
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The operators' list of every tenant's orders, newest first (the admin).
            models.Index(fields=["-created_at"], name="order_created"),
            models.Index(fields=["tenant", "-created_at"], name="order_tenant_created"),
            models.Index(fields=["tenant", "customer", "-created_at"], name="order_customer_created"),
            models.Index(fields=["tenant", "status"], name="order_tenant_status"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["placed", "confirmed", "fulfilled", "delivered", "cancelled"]),
                name="order_status_valid",
            ),
            # A cancelled order always says why; no other order has a reason.
            models.CheckConstraint(
                condition=(
                    Q(
                        status="cancelled",
                        cancellation_reason__in=["out_of_stock", "payment_declined", "customer_request"],
                    )
                    | (~Q(status="cancelled") & Q(cancellation_reason=""))
                ),
                name="order_cancellation_reason_valid",
            ),
            models.CheckConstraint(condition=Q(total_amount__gte=0), name="order_total_not_negative"),
        ]

    def __str__(self) -> str:
        return f"Order {self.id} ({self.status})"

    @property
    def is_cancellable(self) -> bool:
        return self.status in self.CANCELLABLE


class OrderItem(models.Model):
    """One line of an order, priced from the catalog when the order was placed."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items")
    sku = models.CharField("SKU", max_length=SKU_MAX_LENGTH)
    title = models.CharField(max_length=TITLE_MAX_LENGTH)
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(MAX_QUANTITY)])
    unit_price = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["order", "sku"], name="order_item_sku_unique_per_order"),
            models.CheckConstraint(
                condition=Q(quantity__gte=1, quantity__lte=MAX_QUANTITY), name="order_item_quantity_in_range"
            ),
            models.CheckConstraint(condition=Q(unit_price__gte=0), name="order_item_unit_price_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.sku}"
