"""The outbox: stored events (kept for ever) and one delivery record per (event, handler)."""

from __future__ import annotations

import json

from django.db import models
from django.db.models import Q


class StoredEvent(models.Model):
    """An event as recorded in the transaction of the change it describes.

    `position` is assigned at commit time, in commit order (see migration 0002): a reader that
    tracks it never skips an event that committed late. `id` is the insertion order, which is the
    order of one aggregate's events because producers change an aggregate under its row lock.
    """

    id = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(unique=True, editable=False)
    type = models.CharField(max_length=100, db_index=True)
    version = models.PositiveSmallIntegerField()
    tenant_id = models.UUIDField()
    aggregate_id = models.UUIDField()
    occurred_at = models.DateTimeField()
    recorded_at = models.DateTimeField(auto_now_add=True)
    correlation_id = models.CharField(max_length=128)
    causation_id = models.UUIDField()
    payload = models.JSONField()
    position = models.BigIntegerField(null=True, unique=True, editable=False)

    class Meta:
        verbose_name = "stored event"
        indexes = [
            models.Index(fields=["tenant_id", "position"], name="storedevent_tenant_position"),
            models.Index(fields=["aggregate_id", "id"], name="storedevent_aggregate"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"

    @property
    def ref(self) -> str:
        return f"#{self.pk} ({self.type} v{self.version}, {self.event_id})"

    def envelope(self) -> dict[str, object]:
        return {
            "event_id": self.event_id,
            "tenant_id": self.tenant_id,
            "occurred_at": self.occurred_at,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
        }

    def pretty_payload(self) -> str:
        return json.dumps(self.payload, indent=2, sort_keys=True)


class Delivery(models.Model):
    """The inbox: one (event, handler) pair, its state and its retry schedule."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        DEAD = "dead"

    OPEN = (Status.PENDING, Status.FAILED)

    # No database constraint: a delivery is written in the same statement as its event, events are
    # never deleted, and a constraint would cost a lookup per delivery on every publish.
    stored_event = models.ForeignKey(
        StoredEvent, on_delete=models.PROTECT, related_name="deliveries", db_constraint=False
    )
    handler = models.CharField(max_length=150)
    event_type = models.CharField(max_length=100)
    tenant_id = models.UUIDField()
    aggregate_id = models.UUIDField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # When the delivery may next be claimed. A claim pushes it forward by the lease, so a claim
    # whose holder died simply becomes due again.
    next_attempt_at = models.DateTimeField()
    lease_token = models.UUIDField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["stored_event", "handler"], name="delivery_once_per_handler"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "succeeded", "failed", "dead"]), name="delivery_status_valid"
            ),
        ]
        indexes = [
            # Claims read only this partial index, whatever the table's statistics say.
            models.Index(
                fields=["next_attempt_at"], name="delivery_claimable", condition=Q(status__in=["pending", "failed"])
            ),
            # "Is an earlier event of this aggregate still open for this handler?"
            models.Index(
                fields=["handler", "aggregate_id", "stored_event"],
                name="delivery_open_by_aggregate",
                condition=Q(status__in=["pending", "failed"]),
            ),
            models.Index(fields=["completed_at"], name="delivery_succeeded", condition=Q(status="succeeded")),
            models.Index(fields=["status", "handler"], name="delivery_status_handler"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.handler} ({self.status})"
