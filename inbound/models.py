"""The distributor's secrets and the inbox of its shipment notices.

- `DistributorSecret`: what the distributor signs its webhooks with, per bookstore; after a rotation
  the old one keeps verifying until it expires.
- `InboxMessage`: one notice, keyed by (bookstore, the sender's message id), recorded in the same
  transaction as its effect, so that a message seen again is never applied again.
- `LostShipment`: a staff task opened by a `lost` notice, until someone marks it looked at.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from core.fields import EncryptedTextField

MESSAGE_ID_MAX_LENGTH = 255


class DistributorSecret(models.Model):
    """A signing secret (`whsec_<base64>`). It is never shown after the response that created it."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    # Encrypted at rest: a dump of the database alone does not let anyone sign as the distributor.
    secret = EncryptedTextField()
    created_at = models.DateTimeField(auto_now_add=True)
    # Null while it is the current secret; set by a rotation to when it stops verifying.
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "expires_at"], name="distributor_secret_tenant")]

    def __str__(self) -> str:
        return f"distributor secret from {self.created_at:%Y-%m-%d %H:%M}"

    def __repr__(self) -> str:
        return f"<DistributorSecret {self.pk} of {self.tenant_id}>"


class InboxMessage(models.Model):
    class Status(models.TextChoices):
        APPLIED = "applied"
        NOTHING_TO_DO = "nothing_to_do", "nothing to do"  # the order was already there
        PARKED = "parked"  # not applied, for the reason given

    class Source(models.TextChoices):
        WEBHOOK = "webhook"
        BROKER = "broker"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Null only for a broker message that names no bookstore we know (operators see it).
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    message_id = models.CharField(max_length=MESSAGE_ID_MAX_LENGTH)
    source = models.CharField(max_length=10, choices=Source.choices)
    # The notice as read; empty for a body that is not a notice.
    kind = models.CharField(max_length=16, blank=True)
    order_id = models.UUIDField(null=True, blank=True)
    tracking_number = models.CharField(max_length=100, blank=True)
    occurred_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices)
    reason = models.CharField(max_length=500, blank=True)
    # The events the notice recorded, by type.
    events = models.JSONField(default=list, blank=True)
    # The body as received (first 10,000 characters), for a parked message to be looked at.
    body = models.TextField(blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "message_id"], name="inbox_message_once", nulls_distinct=False),
            models.CheckConstraint(
                condition=Q(status__in=["applied", "nothing_to_do", "parked"]), name="inbox_message_status_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "-received_at"], name="inbox_message_tenant"),
            models.Index(fields=["order_id"], name="inbox_message_order"),
        ]

    def __str__(self) -> str:
        return f"{self.kind or 'message'} {self.message_id} ({self.status})"


class LostShipment(models.Model):
    """A shipment the distributor reported lost: a task for staff until marked looked at."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    order_id = models.UUIDField()
    tracking_number = models.CharField(max_length=100)
    reported_at = models.DateTimeField()
    message = models.OneToOneField(InboxMessage, on_delete=models.PROTECT, related_name="lost_shipment")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-reported_at"]
        indexes = [
            models.Index(
                fields=["tenant", "-reported_at"], name="lost_shipment_open", condition=Q(resolved_at__isnull=True)
            )
        ]

    def __str__(self) -> str:
        return f"lost shipment {self.tracking_number} of order {self.order_id}"
