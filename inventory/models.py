"""The catalog and its stock: products, and the reservations that hold stock for orders.

Stock is two counters on the product: `on_hand` (on the shelf) and `reserved` (promised to placed
orders, not yet shipped). What can still be sold is `available = on_hand - reserved`. The database
itself refuses a row where either counter is negative or more is reserved than is on hand, so no
code path, however concurrent, can oversell (guarantee 7 of docs/architecture.md).
"""

from __future__ import annotations

import uuid

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q

from tenants.models import Tenant

SKU_PATTERN = r"^[A-Za-z0-9._-]{1,64}\Z"
SKU_MAX_LENGTH = 64


class Product(models.Model):
    """A book a tenant sells, with its price and its stock counters."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="products")
    sku = models.CharField(
        "SKU",
        max_length=SKU_MAX_LENGTH,
        validators=[RegexValidator(SKU_PATTERN, "Letters, digits, '.', '_' and '-' only (at most 64).")],
    )
    title = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=12, decimal_places=2, validators=[MinValueValidator(0)])
    on_hand = models.IntegerField(default=0, validators=[MinValueValidator(0)])
    reserved = models.IntegerField(default=0, validators=[MinValueValidator(0)])
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sku"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "sku"],
                name="product_sku_unique_per_tenant",
                violation_error_message="This bookstore already has a product with this SKU.",
            ),
            models.CheckConstraint(
                condition=Q(price__gte=0),
                name="product_price_not_negative",
                violation_error_message="The price cannot be negative.",
            ),
            models.CheckConstraint(
                condition=Q(on_hand__gte=0),
                name="product_on_hand_not_negative",
                violation_error_message="Stock on hand cannot be negative.",
            ),
            models.CheckConstraint(
                condition=Q(reserved__gte=0),
                name="product_reserved_not_negative",
                violation_error_message="Reserved stock cannot be negative.",
            ),
            models.CheckConstraint(
                condition=Q(reserved__lte=F("on_hand")),
                name="product_reserved_within_on_hand",
                violation_error_message="More stock cannot be reserved than is on hand.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.sku} — {self.title}"

    @property
    def available(self) -> int:
        """Units that can still be reserved."""
        return self.on_hand - self.reserved


class Reservation(models.Model):
    """The stock held for one order: the order's reservation is the aggregate of `inventory.*` events.

    There is at most one per order. A `released` reservation without lines is a tombstone: the
    order was cancelled before its stock was reserved, and a late reservation must not happen.
    """

    class Status(models.TextChoices):
        RESERVED = "reserved"
        RELEASED = "released"
        SHIPPED = "shipped"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="reservations")
    order_id = models.UUIDField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RESERVED)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "order_id"], name="reservation_once_per_order"),
            models.CheckConstraint(
                condition=Q(status__in=["reserved", "released", "shipped"]), name="reservation_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"reservation for order {self.order_id} ({self.status})"


class ReservationLine(models.Model):
    """How many units of one product a reservation holds."""

    reservation = models.ForeignKey(Reservation, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="reservation_lines")
    quantity = models.IntegerField(validators=[MinValueValidator(1)])

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["reservation", "product"], name="reservation_line_once_per_product"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="reservation_line_quantity_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} of {self.product_id}"
