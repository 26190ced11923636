"""The audit trail: one append-only entry per event, in a hash chain per tenant."""

from __future__ import annotations

from django.db import models


class AuditEntry(models.Model):
    """An event as the auditors see it. `hash` covers the entry's canonical content and the
    previous entry's hash, so an entry altered, removed, inserted or moved breaks the chain.

    The database refuses UPDATE and DELETE on this table (migration 0002).
    """

    id = models.BigAutoField(primary_key=True)
    tenant_id = models.UUIDField()
    sequence = models.PositiveBigIntegerField()
    event_id = models.UUIDField(unique=True)
    event_type = models.CharField(max_length=100)
    aggregate_id = models.UUIDField()
    actor = models.CharField(max_length=100)
    correlation_id = models.CharField(max_length=128)
    causation_id = models.UUIDField()
    payload = models.JSONField()
    occurred_at = models.DateTimeField()
    recorded_at = models.DateTimeField()
    position = models.BigIntegerField()
    previous_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        verbose_name_plural = "audit entries"
        constraints = [models.UniqueConstraint(fields=["tenant_id", "sequence"], name="audit_one_entry_per_sequence")]
        indexes = [
            models.Index(fields=["aggregate_id"], name="audit_aggregate"),
            models.Index(fields=["correlation_id"], name="audit_correlation"),
            # The admin's actor filter and search: one actor exactly, or a kind of actor by prefix
            # (`staff:`), which on PostgreSQL needs the pattern operator class whatever the collation.
            models.Index(fields=["actor", "id"], name="audit_actor", opclasses=["varchar_pattern_ops", "int8_ops"]),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.event_type} {self.event_id}"
