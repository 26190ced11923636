"""The idempotency keys that make a POST safe to retry (see `core.idempotency`)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class IdempotencyKey(models.Model):
    """A client's `Idempotency-Key` for one request, and the response that request produced.

    `fingerprint` identifies the request (method, path and canonical JSON body), so the key cannot
    be reused for another request. `locked_at` is when the current attempt took the key: an
    attempt that crashed leaves it `in_progress` until it is stale and another attempt takes over.
    """

    class State(models.TextChoices):
        IN_PROGRESS = "in_progress"
        COMPLETED = "completed"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="idempotency_keys")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=State.choices, default=State.IN_PROGRESS)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField()
    locked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # The table was created when the keys belonged to orders; it keeps its name and its rows.
        db_table = "orders_idempotencykey"
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique_per_user"),
            models.CheckConstraint(
                condition=Q(state="in_progress") | Q(state="completed", response_status__isnull=False),
                name="idempotency_key_completed_has_response",
            ),
        ]
        # A user's expired keys are deleted when they claim a new one.
        indexes = [models.Index(fields=["user", "created_at"], name="idempotency_key_user_created")]

    def __str__(self) -> str:
        return f"{self.key} ({self.state})"
