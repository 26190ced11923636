"""Webhook endpoints of a bookstore, their signing secrets, and every delivery and attempt.

- `WebhookEndpoint`: where a tenant wants its events POSTed, and which types.
- `WebhookSecret`: the endpoint's signing secrets; after a rotation the old one keeps signing
  until it expires, so receivers can switch over without losing a message.
- `WebhookDelivery`: one (event, endpoint) pair with its state and retry schedule; its id is
  the `webhook-id` header, the same on every attempt.
- `WebhookAttempt`: one POST of a delivery and what came back.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from core.fields import EncryptedTextField


class WebhookEndpoint(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    url = models.URLField(max_length=2000)
    # Event types to send; empty means every type.
    event_types = models.JSONField(default=list, blank=True)
    is_active = models.BooleanField(default=True)
    description = models.CharField(max_length=500, blank=True)
    # Why it was disabled when the platform did it (a `410 Gone`); empty otherwise.
    disabled_reason = models.CharField(max_length=200, blank=True)
    # Since when every attempt to it has failed (its last success, or its first failure after
    # one); None while it answers. Past `WEBHOOK_DISABLE_AFTER_DAYS` it is disabled.
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "is_active"], name="webhook_endpoint_tenant")]

    def __str__(self) -> str:
        return self.url

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class WebhookSecret(models.Model):
    """A signing secret (`whsec_<base64>`). It is never shown after the response that created it."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="secrets")
    # Encrypted at rest: a dump of the database alone does not let anyone sign as us.
    secret = EncryptedTextField()
    created_at = models.DateTimeField(auto_now_add=True)
    # Null while it is the current secret; set by a rotation to when it stops signing.
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["endpoint", "expires_at"], name="webhook_secret_endpoint")]

    def __str__(self) -> str:
        return f"secret of {self.endpoint_id} from {self.created_at:%Y-%m-%d %H:%M}"

    def __repr__(self) -> str:
        return f"<WebhookSecret {self.pk} of {self.endpoint_id}>"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # an attempt failed; another is scheduled
    DEAD = "dead"  # no attempt left; redeliver or recover to send it again


OPEN = (DeliveryStatus.PENDING, DeliveryStatus.FAILED)


class WebhookDelivery(models.Model):
    Status = DeliveryStatus
    OPEN = OPEN

    # Sent as `webhook-id`: receivers deduplicate on it.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.UUIDField()
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.UUIDField()
    event_type = models.CharField(max_length=100)
    # The CloudEvent `subject` (the aggregate) and the event's position: deliveries of one
    # subject to one endpoint go out one at a time in position order.
    subject = models.CharField(max_length=100)
    position = models.BigIntegerField()
    # The CloudEvent as it is sent, fixed when the delivery is created.
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # Attempts made before the current round (a redelivery starts the schedule again).
    attempts_before_round = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    # A sender's claim: it is sending until then (longer than the request's total timeout).
    lease_token = models.UUIDField(null=True, blank=True)
    leased_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    # When a message for this delivery was last handed to the broker (the sweep's bookkeeping).
    enqueued_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event_id", "endpoint"], name="webhook_delivery_once_per_endpoint"),
        ]
        indexes = [
            # The sweep: open deliveries that are due.
            models.Index(fields=["next_attempt_at"], name="webhook_delivery_due", condition=Q(status__in=OPEN)),
            # "Is an earlier event of this subject still open for this endpoint?"
            models.Index(
                fields=["endpoint", "subject", "position"],
                name="webhook_delivery_open_subject",
                condition=Q(status__in=OPEN),
            ),
            # A sender handing on: the endpoint's open deliveries, oldest event first.
            models.Index(
                fields=["endpoint", "position"], name="webhook_delivery_open_queue", condition=Q(status__in=OPEN)
            ),
            # The requests in flight to an endpoint (a lease is cleared when its attempt is recorded):
            # live leases are a range of the index, so counting them never reads the endpoint's
            # other deliveries, whatever the planner believes of their number.
            models.Index(
                fields=["endpoint", "leased_until"],
                name="webhook_delivery_leased",
                condition=Q(leased_until__isnull=False),
            ),
            # The API's and the admin's lists, newest first: per endpoint, per tenant, and every
            # tenant's for operators.
            models.Index(fields=["endpoint", "-created_at"], name="webhook_delivery_recent"),
            models.Index(fields=["tenant_id", "-created_at"], name="webhook_delivery_tenant"),
            models.Index(fields=["-created_at"], name="webhook_delivery_created"),
            # The deliveries of one aggregate (an order), on its admin page.
            models.Index(fields=["subject"], name="webhook_delivery_subject"),
            # The dashboard's counts of retrying and dead deliveries; rows enter it only when they fail.
            models.Index(
                fields=["tenant_id", "status"],
                name="webhook_delivery_troubled",
                condition=Q(status__in=["failed", "dead"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.endpoint_id} ({self.status})"

    @property
    def next_attempt_at_if_open(self):
        return self.next_attempt_at if self.status in OPEN else None


class WebhookAttempt(models.Model):
    """One POST of a delivery: when, how long, what came back (the first kilobyte) or what failed."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_number")]

    def __str__(self) -> str:
        return f"attempt {self.number}: {self.status_code or self.error[:40]}"
