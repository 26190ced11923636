"""Payments: one per order, and the simulated provider's own ledger."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from core.fields import EncryptedTextField
from tenants.models import Tenant


def mask_token(token: str) -> str:
    """A payment token as it may be shown: only its last four characters."""
    if len(token) <= 4:
        return "••••" if token else ""
    return f"••••{token[-4:]}"


class Payment(models.Model):
    """The payment of one order: registered when the order is placed, captured once its stock is
    reserved, voided or refunded when it is cancelled.

    A payment voided before it was registered is a tombstone: a late registration or capture finds
    it and does nothing. `payment_token` is the customer's card token; it never leaves this module
    and is never shown in full.

    `capture_key` and `refund_key` are the idempotency keys a capture and a refund were sent to the
    provider with. Each is written before its request goes out and never changes afterwards: a
    retry, whoever makes it, sends the same key, and the provider answers it with the first
    result. A pending payment with a `capture_key` has a capture whose outcome is not recorded yet.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        CAPTURED = "captured"
        DECLINED = "declined"
        VOIDED = "voided"
        REFUNDED = "refunded"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    order_id = models.UUIDField(unique=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    # Encrypted at rest with the field encryption keys (`FIELD_ENCRYPTION_KEYS`).
    payment_token = EncryptedTextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    provider_reference = models.CharField(max_length=100, blank=True)
    refund_reference = models.CharField(max_length=100, blank=True)
    failure_reason = models.CharField(max_length=500, blank=True)
    capture_key = models.CharField(max_length=255, blank=True)
    refund_key = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    captured_at = models.DateTimeField(null=True, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "captured", "declined", "voided", "refunded"]),
                name="payment_status_valid",
            ),
            models.CheckConstraint(condition=Q(amount__gte=0), name="payment_amount_not_negative"),
        ]
        indexes = [models.Index(fields=["tenant", "status", "created_at"], name="payment_tenant_status")]

    def __str__(self) -> str:
        return f"payment of order {self.order_id} ({self.status})"

    @property
    def masked_token(self) -> str:
        return mask_token(self.payment_token)


class SimulatedCharge(models.Model):
    """One request to the simulated provider, keyed by its idempotency key.

    This is the provider's side of the story, written on its own connection so that it survives
    whatever happens to the caller's transaction (as a real provider's records would): a retry with
    the same key finds the charge and answers with the same result instead of charging again.
    """

    class Kind(models.TextChoices):
        CAPTURE = "capture"
        REFUND = "refund"

    class Result(models.TextChoices):
        CAPTURED = "captured"
        REFUNDED = "refunded"
        DECLINED = "declined"

    idempotency_key = models.CharField(max_length=255, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    token = EncryptedTextField(blank=True)
    # For a refund, the reference of the capture it refunds.
    refunded_reference = models.CharField(max_length=100, blank=True)
    result = models.CharField(max_length=10, choices=Result.choices)
    reference = models.CharField(max_length=100, unique=True)
    message = models.CharField(max_length=500, blank=True)
    # How many requests arrived with this key (the first performs the charge; later ones replay it).
    requests = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "simulated charge"

    def __str__(self) -> str:
        return f"{self.kind} {self.reference} ({self.result})"

    @property
    def masked_token(self) -> str:
        return mask_token(self.token)
