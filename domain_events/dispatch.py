"""Running deliveries: the fast path after commit, the executor, and hand-off to Celery.

A delivery runs in a transaction that first locks its record, checks its lease token and that no
earlier event of the same aggregate is still open for the same handler, runs the handler and
records the outcome. The handler's writes and its delivery record therefore commit together: a
redelivered event finds the record `succeeded` and is not applied again. A batch of deliveries
shares one commit; when a handler fails, the batch is rolled back and run again with a savepoint
per handler, so one failing handler rolls back only its own writes.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from uuid import UUID

from django.db import DatabaseError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from domain_events.bus import Mode, Subscription, event_bus
from domain_events.conf import domain_events_settings, retry_schedule
from domain_events.context import traced
from domain_events.events import DomainEvent
from domain_events.models import Delivery, StoredEvent
from domain_events.outbox import Claim
from domain_events.registry import EventLoadError, registry

logger = logging.getLogger(__name__)

MAX_ERROR_LENGTH = 4000


@dataclass
class Report:
    succeeded: int = 0
    failed: int = 0
    dead: int = 0
    waiting: int = 0
    skipped: int = 0
    sent: int = 0

    def add(self, other: Report) -> None:
        for name in ("succeeded", "failed", "dead", "waiting", "skipped", "sent"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def handled(self) -> int:
        return self.succeeded + self.failed + self.dead + self.waiting + self.sent


# --- the fast path ------------------------------------------------------------------------


@dataclass
class _Pending:
    callback: object = None
    claims: list[Claim] = field(default_factory=list)


_local = threading.local()


def after_commit(claims: Iterable[Claim]) -> None:
    """Queue `claims` for dispatch when the current transaction commits: one dispatch per commit."""
    connection = transaction.get_connection()
    pending: _Pending | None = getattr(_local, "pending", None)
    # A rolled-back transaction drops its on_commit callbacks; then the list is stale too.
    if pending is None or not any(item[1] is pending.callback for item in connection.run_on_commit):
        pending = _Pending()
        claims_ref = pending.claims

        def dispatch_pending() -> None:
            if getattr(_local, "pending", None) is pending:
                _local.pending = None
            hand_on(claims_ref)

        pending.callback = dispatch_pending
        _local.pending = pending
        transaction.on_commit(dispatch_pending)
    pending.claims.extend(claims)


def hand_on(claims: Sequence[Claim], *, by_relay: bool = False) -> Report:
    """Send celery-mode claims to the broker and run the others here. Never raises.

    `by_relay`: the claims come from a relay's lease rather than from a publisher's commit.
    """
    report = Report()
    local: list[Claim] = []
    remote: list[tuple[Claim, Subscription]] = []
    for claim in claims:
        subscription = event_bus.subscription(claim.handler)
        if subscription is not None and subscription.mode is Mode.CELERY:
            remote.append((claim, subscription))
        else:
            local.append(claim)
    if remote:
        report.sent += send_to_celery(remote, by_relay=by_relay)
    if local:
        try:
            report.add(execute(local))
        except Exception:
            # The deliveries stay open; a relay runs them once their lease is over.
            logger.exception("dispatch of %d deliveries failed; the relay will retry them", len(local))
    return report


def send_to_celery(items: Sequence[tuple[Claim, Subscription]], *, by_relay: bool = False) -> int:
    """One task per (event, handler); returns how many were sent.

    A sent delivery must get the Celery lease, since its message may queue for a while (the
    publisher's deliveries have it from the start). What the publisher could not send becomes due
    at once for the relays; what a relay could not send waits for its claim to expire.
    """
    from domain_events.tasks import run_delivery

    sent: list[int] = []
    try:
        with run_delivery.app.producer_or_acquire() as producer:
            for claim, subscription in items:
                options = {"queue": subscription.queue} if subscription.queue else {}
                run_delivery.apply_async(
                    args=(claim.delivery_id, str(claim.token)), producer=producer, retry=False, **options
                )
                sent.append(claim.delivery_id)
    except Exception:
        logger.warning(
            "broker unavailable: %d of %d deliveries not sent; a relay will send them",
            len(items) - len(sent),
            len(items),
            exc_info=True,
        )
        if not by_relay:
            done = set(sent)
            _reschedule([claim.delivery_id for claim, _ in items if claim.delivery_id not in done], timezone.now())
    if by_relay and sent:
        _reschedule(sent, timezone.now() + domain_events_settings()["CELERY_LEASE"])
    return len(sent)


def _reschedule(delivery_ids: Sequence[int], when) -> None:
    try:
        Delivery.objects.filter(pk__in=delivery_ids, status__in=Delivery.OPEN).update(next_attempt_at=when)
    except Exception:
        logger.warning("could not reschedule %d deliveries; their current lease stands", len(delivery_ids))


# --- the executor ---------------------------------------------------------------------------


class _RunCarefully(Exception):
    """The optimistic pass met a failing handler: roll the pass back, record that failure, and run
    the rest of the batch handler by handler."""

    def __init__(self, delivery_id: int, error: str) -> None:
        super().__init__(error)
        self.delivery_id = delivery_id
        self.error = error


def execute(claims: Sequence[Claim]) -> Report:
    """Run the deliveries of `claims` whose lease is still valid, in one transaction.

    The rows are locked without SKIP LOCKED: the lease token says they are ours, and a lock held
    by someone else is a relay's claim scan passing over them, which ends in milliseconds.
    """
    if not claims:
        return Report()
    tokens: dict[int, UUID] = {c.delivery_id: c.token for c in claims}

    def lock() -> tuple[list[Delivery], set[int] | None]:
        if transaction.get_connection().vendor == "postgresql":
            rows, blocked = _lock_leased_in_one_statement(tokens)
        else:
            rows = list(
                Delivery.objects.select_for_update(of=("self",))
                .select_related("stored_event")
                .filter(id__in=tokens.keys(), status__in=Delivery.OPEN, lease_token__in=set(tokens.values()))
                .order_by("stored_event_id", "id")
            )
            blocked = None
        return [d for d in rows if d.lease_token == tokens[d.pk]], blocked

    report = _run_batch(lock)
    report.skipped = len(claims) - report.handled
    return report


_DELIVERY_COLUMNS = (
    "id",
    "stored_event_id",
    "handler",
    "event_type",
    "tenant_id",
    "aggregate_id",
    "status",
    "attempts",
    "next_attempt_at",
    "lease_token",
    "last_error",
    "created_at",
    "updated_at",
    "completed_at",
)
_EVENT_COLUMNS = (
    "id",
    "event_id",
    "type",
    "version",
    "tenant_id",
    "aggregate_id",
    "occurred_at",
    "recorded_at",
    "correlation_id",
    "causation_id",
    "payload",
    "position",
)
# Built from the column tuples above only; every value is a bound parameter.
_LOCK_LEASED = f"""
SELECT {", ".join("d." + c for c in _DELIVERY_COLUMNS)}, {", ".join("e." + c for c in _EVENT_COLUMNS)},
       EXISTS (SELECT 1 FROM domain_events_delivery o
                WHERE o.handler = d.handler AND o.aggregate_id = d.aggregate_id
                  AND o.stored_event_id < d.stored_event_id AND o.status IN ('pending', 'failed')
                  AND o.id <> ALL(%(ids)s)) AS blocked
  FROM domain_events_delivery d JOIN domain_events_storedevent e ON e.id = d.stored_event_id
 WHERE d.id = ANY(%(ids)s) AND d.status IN ('pending', 'failed') AND d.lease_token = ANY(%(tokens)s)
 ORDER BY d.stored_event_id, d.id
   FOR UPDATE OF d"""


def _lock_leased_in_one_statement(tokens: dict[int, UUID]) -> tuple[list[Delivery], set[int]]:
    """PostgreSQL: lock the leased rows, read their events and check their order in one statement.

    This runs once per commit on the fast path, so it is written out rather than compiled by the
    ORM each time.
    """
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(_LOCK_LEASED, {"ids": list(tokens), "tokens": list(set(tokens.values()))})
        fetched = cursor.fetchall()
    rows: list[Delivery] = []
    blocked: set[int] = set()
    width = len(_DELIVERY_COLUMNS)
    for row in fetched:
        delivery = Delivery.from_db("default", _DELIVERY_COLUMNS, row[:width])
        event_values = list(row[width : width + len(_EVENT_COLUMNS)])
        payload = event_values[_EVENT_COLUMNS.index("payload")]
        if isinstance(payload, str):
            event_values[_EVENT_COLUMNS.index("payload")] = json.loads(payload)
        delivery.stored_event = StoredEvent.from_db("default", _EVENT_COLUMNS, event_values)
        if row[-1]:
            blocked.add(delivery.pk)
        rows.append(delivery)
    return rows, blocked


def run_due_here(limit: int) -> Report:
    """Claim and run due deliveries of this process's in-process handlers, in one transaction.

    Nothing here talks to a broker or the network, so the claim is the row lock itself: a relay
    that dies mid-batch rolls back and its rows are due again at once.
    """
    names = [s.name for s in event_bus.subscriptions() if s.mode is not Mode.CELERY]
    if not names:
        return Report()
    seen: list[int] = []

    def lock() -> tuple[list[Delivery], set[int] | None]:
        qs = Delivery.objects.filter(status__in=Delivery.OPEN, next_attempt_at__lte=timezone.now())
        qs = qs.filter(pk__in=seen) if seen else qs.filter(handler__in=names)
        rows = list(
            qs.select_for_update(skip_locked=True, of=("self",))
            .select_related("stored_event")
            .order_by("next_attempt_at")[:limit]
        )
        seen[:] = [d.pk for d in rows]
        return sorted(rows, key=lambda d: (d.stored_event_id, d.pk)), None

    return _run_batch(lock)


def _run_batch(lock) -> Report:
    """Run a batch in one transaction; on any failure, again with a savepoint per handler.

    The optimistic pass costs one commit and no savepoints. If a handler raises, or the commit
    fails (a deferred constraint), everything it did is rolled back and the careful pass runs each
    handler in its own savepoint with constraints checked per statement, so a failure stays with
    its handler and the others' writes still commit with their delivery records. A handler that
    raised is not run twice: its failure is recorded as it was.
    """
    known_failures: dict[int, str] = {}
    try:
        with transaction.atomic():
            return _run_locked(*lock(), careful=False)
    except _RunCarefully as failure:
        known_failures[failure.delivery_id] = failure.error
    except DatabaseError:
        logger.info("a batch failed at commit; running it again handler by handler", exc_info=True)
    with transaction.atomic():
        _check_constraints_per_statement()
        return _run_locked(*lock(), careful=True, known_failures=known_failures)


def _run_locked(
    rows: list[Delivery], blocked: set[int] | None, *, careful: bool, known_failures: dict[int, str] | None = None
) -> Report:
    report = Report()
    if not rows:
        return report
    if blocked is None:
        blocked = _blocked_by_earlier(rows)
    now = timezone.now()
    conf = domain_events_settings()
    events: dict[int, DomainEvent | Exception] = {}
    succeeded: list[int] = []
    changed: list[Delivery] = []
    closed_keys: set[tuple[str, UUID]] = set()
    for delivery in rows:
        key = (delivery.handler, delivery.aggregate_id)
        if delivery.pk in blocked or key in closed_keys:
            # An earlier event of this aggregate is still open for this handler: wait behind it.
            closed_keys.add(key)
            delivery.next_attempt_at = now + conf["ORDERING_WAIT"]
            delivery.lease_token = None
            delivery.last_error = "waiting for an earlier event of the same aggregate"
            changed.append(delivery)
            report.waiting += 1
            continue
        if known_failures and delivery.pk in known_failures:
            error = known_failures[delivery.pk]
        else:
            error = _run_one(delivery, events, careful=careful)
        if error is None:
            succeeded.append(delivery.pk)
            report.succeeded += 1
            continue
        closed_keys.add(key)
        _schedule_retry(delivery, error, now, conf["RETRY_JITTER"])
        changed.append(delivery)
        if delivery.status == Delivery.Status.DEAD:
            report.dead += 1
        else:
            report.failed += 1
    if succeeded:
        _mark_succeeded(succeeded, now)
    if changed:
        for delivery in changed:
            delivery.updated_at = now
        Delivery.objects.bulk_update(
            changed, ["status", "attempts", "next_attempt_at", "lease_token", "last_error", "updated_at"]
        )
    return report


def _mark_succeeded(delivery_ids: list[int], now) -> None:
    placeholders = ", ".join(["%s"] * len(delivery_ids))
    sql = (
        "UPDATE domain_events_delivery SET status = 'succeeded', attempts = attempts + 1, lease_token = NULL,"
        f" last_error = '', completed_at = %s, updated_at = %s WHERE id IN ({placeholders})"
    )
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(sql, [now, now, *delivery_ids])


def _check_constraints_per_statement() -> None:
    """Make deferred constraints (Django's foreign keys) fire inside each handler's savepoint.

    Otherwise a handler that writes a dangling reference passes its savepoint and breaks the
    commit of the whole batch. The outbox's position trigger stays deferred: it must run at commit.
    """
    connection = transaction.get_connection()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE; SET CONSTRAINTS domain_events_assign_position DEFERRED")


def _blocked_by_earlier(rows: Sequence[Delivery]) -> set[int]:
    """Ids among `rows` with an earlier, still open delivery of the same handler and aggregate."""
    ids = [d.pk for d in rows]
    earlier_open = Delivery.objects.filter(
        handler=OuterRef("handler"),
        aggregate_id=OuterRef("aggregate_id"),
        stored_event_id__lt=OuterRef("stored_event_id"),
        status__in=Delivery.OPEN,
    ).exclude(pk__in=ids)
    return set(Delivery.objects.filter(pk__in=ids).filter(Exists(earlier_open)).values_list("pk", flat=True))


def _load(delivery: Delivery, events: dict[int, DomainEvent | Exception]) -> DomainEvent:
    """The delivery's event, read (and upcast) once per batch however many handlers it has."""
    stored = delivery.stored_event
    if stored.pk not in events:
        try:
            events[stored.pk] = registry.load(
                stored.type, stored.version, stored.payload, envelope=stored.envelope(), ref=stored.ref
            )
        except EventLoadError as exc:
            events[stored.pk] = exc
    loaded = events[stored.pk]
    if isinstance(loaded, Exception):
        raise loaded
    return loaded


def _run_one(delivery: Delivery, events: dict[int, DomainEvent | Exception], *, careful: bool) -> str | None:
    """Run one handler; returns the error text, or None on success.

    In the optimistic pass a failure aborts the whole pass (it is recorded, not run again); in the
    careful pass the handler runs in its own savepoint and its failure is returned.
    """
    subscription = event_bus.subscription(delivery.handler)
    try:
        if subscription is None:
            raise LookupError(f"no handler named {delivery.handler!r} is subscribed in this process")
        event = _load(delivery, events)
        with traced(event.correlation_id, causation_id=event.event_id):
            if careful:
                with transaction.atomic():
                    subscription.handler(event)
            else:
                subscription.handler(event)
    except Exception as exc:
        logger.warning("handler %s failed on %s: %r", delivery.handler, delivery.stored_event.ref, exc, exc_info=True)
        error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_LENGTH]
        if not careful:
            raise _RunCarefully(delivery.pk, error) from exc
        return error
    return None


def _schedule_retry(delivery: Delivery, error: str, now, jitter: float) -> None:
    subscription = event_bus.subscription(delivery.handler)
    schedule = (subscription.retry_schedule if subscription else None) or retry_schedule()
    delivery.attempts += 1
    delivery.last_error = error
    delivery.lease_token = None
    if delivery.attempts > len(schedule):
        delivery.status = Delivery.Status.DEAD
        delivery.next_attempt_at = now
        logger.error("delivery %s of %s is dead after %d attempts", delivery.pk, delivery.handler, delivery.attempts)
        return
    delay = schedule[delivery.attempts - 1] * random.uniform(1 - jitter, 1 + jitter)
    delivery.status = Delivery.Status.FAILED
    delivery.next_attempt_at = now + timedelta(seconds=delay)


# --- claims for relays ----------------------------------------------------------------------


def claim_due(limit: int, *, handlers: Sequence[str] | None = None) -> list[Claim]:
    """Lease up to `limit` due deliveries (of `handlers`, if given); the claim commits before
    anything is run or sent."""
    conf = domain_events_settings()
    with transaction.atomic():
        now = timezone.now()
        due_qs = Delivery.objects.filter(status__in=Delivery.OPEN, next_attempt_at__lte=now)
        if handlers is not None:
            due_qs = due_qs.filter(handler__in=handlers)
        due = list(
            due_qs.order_by("next_attempt_at").select_for_update(skip_locked=True).values_list("pk", "handler")[:limit]
        )
        if not due:
            return []
        token = uuid.uuid4()
        Delivery.objects.filter(pk__in=[pk for pk, _ in due]).update(
            lease_token=token, next_attempt_at=now + conf["LEASE"], updated_at=now
        )
    return [Claim(pk, token, handler) for pk, handler in due]


def redrive(deliveries: Iterable[Delivery] | None = None, *, queryset=None) -> int:
    """Reopen dead deliveries with a fresh schedule and hand them on at once."""
    qs = queryset if queryset is not None else Delivery.objects.filter(pk__in=[d.pk for d in deliveries or ()])
    with transaction.atomic():
        ids = list(
            qs.filter(status=Delivery.Status.DEAD).select_for_update(skip_locked=True).values_list("pk", "handler")
        )
        if not ids:
            return 0
        token = uuid.uuid4()
        now = timezone.now()
        Delivery.objects.filter(pk__in=[pk for pk, _ in ids]).update(
            status=Delivery.Status.PENDING,
            attempts=0,
            lease_token=token,
            next_attempt_at=now + domain_events_settings()["LEASE"],
            updated_at=now,
        )
        claims = [Claim(pk, token, handler) for pk, handler in ids]
        transaction.on_commit(lambda: hand_on(claims, by_relay=True))
    return len(ids)
