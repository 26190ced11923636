"""The log of every e-mail to a customer: one row per (event, template), whatever the redeliveries."""

from __future__ import annotations

import uuid

from django.db import models


class EmailMessage(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"
        SKIPPED = "skipped"  # nobody to write to (the customer has no e-mail address)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.UUIDField()
    event_id = models.UUIDField()
    event_type = models.CharField(max_length=100)
    order_id = models.UUIDField()
    template = models.CharField(max_length=100)
    recipient = models.EmailField(blank=True)
    subject = models.CharField(max_length=200, blank=True)
    message_id = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["event_id", "template"], name="email_once_per_event_template")]
        indexes = [
            models.Index(fields=["tenant_id", "-created_at"], name="email_tenant_recent"),
            # The e-mails of one order, on its admin page.
            models.Index(fields=["order_id"], name="email_order"),
        ]

    def __str__(self) -> str:
        return f"{self.template} to {self.recipient or '(nobody)'} ({self.status})"


class OrderContact(models.Model):
    """Who to write to about an order, learnt from `order.placed` (the module reads no orders)."""

    order_id = models.UUIDField(primary_key=True)
    tenant_id = models.UUIDField()
    customer_id = models.UUIDField()
    total_amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    lines = models.JSONField(default=list)

    def __str__(self) -> str:
        return str(self.order_id)
