"""The outbox and its readers' state.

- `StoredEvent`: every event, kept until its month is archived (`archive`), numbered by `position`
  as it is inserted and by `revision` within its aggregate's stream.
- `Stream`: one row per aggregate, with its last revision; its row lock orders one aggregate's events.
- `Delivery`: the inbox of per-event handlers, one row per (event, handler), with its state.
- `Subscriber`: every per-event handler ever deployed, and from which position it is owed events.
- `Checkpoint`: how far each position reader (projection, audit chain, integration relay) has got.
- `ArchivedMonth`: what `archive_events` took out of the table, so replays and the audit check
  still account for it.
- `QueueMark`: per Celery queue, the latest send time a worker has started; proof that older
  unstarted messages on that queue were lost.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from django.db import models
from django.db.models import Expression, Q

from core.masking import masked
from domain_events.private import opened

# What a held delivery waits for: its blocker's release, not a clock.
UNTIL_RELEASED = datetime(9999, 1, 1, tzinfo=UTC)


# The columns kept beside an event's payload: the fields every `DomainEvent` has.
ENVELOPE_COLUMNS = ("event_id", "tenant_id", "occurred_at", "correlation_id", "causation_id", "actor", "traceparent")


def stored_event_ref(pk: int, type_name: str, version: int, event_id: object) -> str:
    """How errors name a stored event."""
    return f"#{pk} ({type_name} v{version}, {event_id})"


class NextPosition(Expression):
    """The database's next position, in an ORM insert: the column's default on PostgreSQL
    (the position sequence's next value), and on SQLite the insert trigger's (the row id)."""

    output_field = models.BigIntegerField()

    def as_sql(self, compiler, connection):
        return "DEFAULT", []

    def as_sqlite(self, compiler, connection):
        return "NULL", []


class PositionField(models.BigIntegerField):
    """`position`: drawn by the database as the row is inserted, and read back."""

    db_returning = True

    def pre_save(self, model_instance, add):
        if add and getattr(model_instance, self.attname) is None:
            return NextPosition()
        return super().pre_save(model_instance, add)


class EventRecordedAtField(models.DateTimeField):
    """`Delivery.event_recorded_at`: its event's `recorded_at`, by whose month deliveries are
    partitioned on PostgreSQL (`domain_events.partitions`); taken from the event when not given."""

    def pre_save(self, model_instance, add):
        value = getattr(model_instance, self.attname)
        if add and value is None and model_instance.stored_event_id is not None:
            value = model_instance.stored_event.recorded_at
            setattr(model_instance, self.attname, value)
        return value


class StoredEvent(models.Model):
    """An event as recorded in the transaction of the change it describes.

    `position` is drawn from a sequence by the insert itself (no second write, no lock), so it
    follows insertion order; position readers read only up to the fenced head
    (`domain_events.head`), below which nothing can still commit, so they never skip an event that
    committed late. `revision` numbers the events of one aggregate: the aggregate's `Stream` row,
    locked by the insert until commit, makes it the aggregate's commit order.

    On PostgreSQL the table is partitioned by the month of `recorded_at` (migration 0017,
    `domain_events.partitions`): its primary key there is (id, recorded_at), and `event_id` and
    `position` are unique within each month, across months by being drawn new (a UUID, a sequence).
    """

    id = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(unique=True, editable=False)
    type = models.CharField(max_length=100)
    version = models.PositiveSmallIntegerField()
    tenant_id = models.UUIDField()
    aggregate_id = models.UUIDField()
    occurred_at = models.DateTimeField()
    recorded_at = models.DateTimeField(auto_now_add=True)
    correlation_id = models.CharField(max_length=128)
    causation_id = models.UUIDField()
    # Who caused it (`domain_events.actors`). Events recorded before actors were kept are `system`,
    # and so is an insert that names no actor (a publisher still running older code).
    actor = models.CharField(max_length=100, default="system", db_default="system")
    # The W3C trace context of the span that published it (`core.tracing`): its handlers' spans join
    # that trace. Null when tracing is off, and for the events recorded before it was kept.
    traceparent = models.CharField(max_length=55, null=True, blank=True)
    payload = models.JSONField()
    # NOT NULL on PostgreSQL (its default draws it); SQLite's insert trigger sets it after the insert.
    position = PositionField(null=True, unique=True, editable=False)
    revision = models.BigIntegerField(null=True, editable=False)

    class Meta:
        verbose_name = "stored event"
        # Every index is paid by each publish.
        indexes = [
            # Position readers, late subscribers and the admin, per tenant or per type, in order.
            models.Index(fields=["tenant_id", "position"], name="storedevent_tenant_position"),
            models.Index(fields=["type", "position"], name="storedevent_type_position"),
            models.Index(fields=["aggregate_id", "position"], name="storedevent_aggregate_pos"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"

    @property
    def ref(self) -> str:
        return stored_event_ref(self.pk, self.type, self.version, self.event_id)

    def envelope(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in ENVELOPE_COLUMNS}

    def pretty_payload(self) -> str:
        """The payload as people may read it (the admin): private fields masked to their last four
        characters, as payments shows a token."""
        return json.dumps(self.readable_payload(), indent=2, sort_keys=True, ensure_ascii=False)

    def readable_payload(self) -> object:
        private = private_fields_of(self.type)
        if not private or not isinstance(self.payload, dict):
            return self.payload
        return {k: masked(v) if k in private else v for k, v in opened(private, self.payload).items()}

    def private_values(self) -> list[str]:
        """The values of the event's private fields, to mask in what people read (error texts, logs)."""
        return private_values_in(self.type, self.payload)


def private_fields_of(type_name: str) -> frozenset[str]:
    """The private fields declared by the event class of `type_name` (none for an unknown type)."""
    from domain_events.registry import EventLoadError, registry

    try:
        return registry.get(type_name).private_fields
    except EventLoadError:
        return frozenset()


def private_values_in(type_name: str, payload: object) -> list[str]:
    """The values of a stored payload's private fields (none for an unknown type or a bad payload)."""
    private = private_fields_of(type_name)
    if not private or not isinstance(payload, dict):
        return []
    payload = opened(private, payload)
    return [str(payload[k]) for k in private if payload.get(k) not in (None, "")]


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    SKIPPED = "skipped"


# Still to be run.
OPEN = (DeliveryStatus.PENDING, DeliveryStatus.FAILED)
# Holds back the later events of its aggregate for its handler.
BLOCKING = (DeliveryStatus.PENDING, DeliveryStatus.FAILED, DeliveryStatus.DEAD)


class Delivery(models.Model):
    """The inbox: one (event, handler) pair, its state and its retry schedule."""

    Status = DeliveryStatus
    OPEN = OPEN
    BLOCKING = BLOCKING

    # No index of its own: the unique (stored_event, handler) index serves lookups by event.
    # No database constraint: a delivery is written in the same statement as its event, events are
    # deleted only with their finished deliveries (`archive`), and a constraint would cost a lookup
    # per delivery on every publish.
    stored_event = models.ForeignKey(
        StoredEvent, on_delete=models.PROTECT, related_name="deliveries", db_constraint=False, db_index=False
    )
    # The event's `recorded_at`: on PostgreSQL deliveries are partitioned by its month, so an
    # event's deliveries (a late subscriber's too) share its month; the primary key there is
    # (id, event_recorded_at) and the unique (stored_event, handler) one includes it.
    event_recorded_at = EventRecordedAtField(editable=False)
    handler = models.CharField(max_length=150)
    event_type = models.CharField(max_length=100)
    tenant_id = models.UUIDField()
    aggregate_id = models.UUIDField()
    # The event's revision in its aggregate's stream: what a delivery waits behind is an earlier one.
    revision = models.BigIntegerField(null=True, editable=False)
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # When the delivery may next be claimed. A claim pushes it forward by the lease, so a claim
    # whose holder died simply becomes due again.
    next_attempt_at = models.DateTimeField()
    lease_token = models.UUIDField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # The earlier delivery of the same handler and aggregate this one waits behind.
    held_by = models.BigIntegerField(null=True, blank=True)
    # Celery hand-off: when the message was sent, and when a worker started it.
    sent_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # What staff decided about a dead letter (skip with a reason).
    resolution = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["stored_event", "handler"], name="delivery_once_per_handler"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "succeeded", "failed", "dead", "skipped"]),
                name="delivery_status_valid",
            ),
        ]
        indexes = [
            # Claims: per handler, what is due. Partial, so finished rows leave it.
            models.Index(
                fields=["handler", "next_attempt_at"],
                name="delivery_claimable",
                condition=Q(status__in=["pending", "failed"]),
            ),
            # "Is an earlier event of this aggregate still unfinished (or dead) for this handler?"
            models.Index(
                fields=["aggregate_id", "handler", "revision"],
                name="delivery_blocking",
                condition=Q(status__in=["pending", "failed", "dead"]),
            ),
            # Pruning and the admin's "succeeded" lists.
            models.Index(fields=["completed_at"], name="delivery_succeeded", condition=Q(status="succeeded")),
            # Releasing what waits behind a delivery once it is done.
            models.Index(fields=["held_by"], name="delivery_held", condition=Q(held_by__isnull=False)),
            # Dead letters, for the admin and redrive.
            models.Index(fields=["handler", "id"], name="delivery_dead", condition=Q(status="dead")),
            # The admin's lists, newest first: staff see one tenant; anyone filters by handler or
            # event type. Full indexes, paid by every insert: the price of those lists staying
            # fast at millions of rows (bench/admin_bench.py).
            models.Index(fields=["tenant_id", "id"], name="delivery_tenant"),
            models.Index(fields=["handler", "id"], name="delivery_handler"),
            models.Index(fields=["event_type", "id"], name="delivery_event_type"),
            # The admin's failed, dead and skipped lists (and their counts, from the index alone);
            # rows enter it only when they go wrong.
            models.Index(
                fields=["status", "id"],
                name="delivery_troubled",
                condition=Q(status__in=["failed", "dead", "skipped"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.handler} ({self.status})"


class Stream(models.Model):
    """One aggregate's events: how many there are (`revision`, the last one's).

    Recording an event upserts its aggregate's row in the same statement, so the row stays locked
    until the recording transaction ends: a second transaction on the same aggregate waits for it,
    and one aggregate's revisions commit in order. A transaction that records events of several
    aggregates takes their rows in aggregate id order (`domain_events.streams`), so two of them
    never wait for each other.
    """

    aggregate_id = models.UUIDField(primary_key=True)
    aggregate_type = models.CharField(max_length=100)
    tenant_id = models.UUIDField()
    revision = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.aggregate_type} {self.aggregate_id} @ {self.revision}"


class Subscriber(models.Model):
    """A per-event handler as first deployed: it is owed every matching event from `first_position`.

    Relays that run the handler create the deliveries that a publisher without it (older code,
    another process) did not, up to `covered_position`.
    """

    name = models.CharField(max_length=150, primary_key=True)
    mode = models.CharField(max_length=20)
    event_types = models.JSONField(default=list)
    first_position = models.BigIntegerField()
    covered_position = models.BigIntegerField()
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.name


class Checkpoint(models.Model):
    """How far a position reader has got; committed with its writes, so a batch applies once."""

    name = models.CharField(max_length=200, primary_key=True)
    position = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)
    attempts = models.PositiveIntegerField(default=0)
    retry_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.name} @ {self.position}"


class ParkedEvent(models.Model):
    """A stored event that a position reader could not read (unknown type, malformed payload, a
    version with no upcaster): set aside with its error, so the reader goes on past it."""

    reader = models.CharField(max_length=200)
    position = models.BigIntegerField()
    stored_event_id = models.BigIntegerField()
    error = models.TextField()
    parked_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["reader", "position"], name="parkedevent_reader_position")]

    def __str__(self) -> str:
        return f"{self.reader} parked #{self.stored_event_id} at {self.position}"


class QueueMark(models.Model):
    queue = models.CharField(max_length=150, primary_key=True)
    started_sent_at = models.DateTimeField()
    probe_sent_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.queue}: started up to {self.started_sent_at}"


class ArchivedMonth(models.Model):
    """A month of stored events written to a file by `archive_events` and then removed from the table.

    Kept so that what the table no longer holds is still accounted for: the rebuild replays the file
    (`rebuild_projections --with-archive`), and `verify_audit_log` counts the month's events per
    tenant and checks that the audit chain heads recorded when it was archived are still there.
    """

    month = models.DateField(primary_key=True)  # its first day (UTC)
    file_name = models.CharField(max_length=200)
    events = models.PositiveBigIntegerField()
    first_position = models.BigIntegerField()
    last_position = models.BigIntegerField()
    # sha256 of the file's event lines, as written and as read back.
    checksum = models.CharField(max_length=64)
    # {tenant id: {"events": n, "parked": {reader: n}, "chain_length": n, "chain_head": hash}}: the
    # month's events and those readers parked, and the audit chain up to the month's last position
    # (no head when no module keeps an audit chain).
    tenants = models.JSONField(default=dict)
    archived_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.month:%Y-%m}: {self.events} events in {self.file_name}"
