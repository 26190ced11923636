"""The executor: runs deliveries, each in the same transaction as its delivery record.

A batch locks its delivery rows, checks each one's lease token and that no earlier event of the
same aggregate (earlier in its stream, by revision) is unfinished or dead for the same handler, runs the handlers and
records the outcomes, in one transaction. The handler's writes and its record therefore commit
together: a redelivered event finds the record `succeeded` and is not applied again.

- One optimistic commit per batch. When a handler fails, the batch is rolled back and run again
  with a savepoint per handler, so one failing handler rolls back only its own writes; the
  handler that failed is recorded, not run a second time.
- A deadlock or serialization failure is nobody's fault: the batch runs again one delivery per
  transaction, and no attempt is counted.
- A delivery held behind an earlier one is not polled: it sleeps until its blocker's next attempt,
  or until released when the blocker succeeds or is skipped (a dead blocker holds it for good).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from uuid import UUID

from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.utils import timezone

from core.log_context import log_scope
from core.masking import mask_error, private_values
from domain_events import metrics, sql, streams, subscribers
from domain_events.claims import Claim
from domain_events.conf import handler_retry_policy
from domain_events.context import traced
from domain_events.events import DomainEvent
from domain_events.models import UNTIL_RELEASED, Delivery, DeliveryStatus, StoredEvent
from domain_events.registry import EventLoadError, registry
from domain_events.retry import kept_error
from domain_events.subscriptions import subscriptions

logger = logging.getLogger(__name__)

TRANSIENT_SQLSTATES = {"40P01", "40001"}  # deadlock detected, serialization failure
TRANSIENT_TRIES = 5


@dataclass
class Report:
    succeeded: int = 0
    failed: int = 0
    dead: int = 0
    waiting: int = 0
    sent: int = 0
    # Deliveries recorded by the handlers of the batch, for the caller to hand on after commit.
    follow_ups: list[Claim] = field(default_factory=list)

    def add(self, other: Report) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def handled(self) -> int:
        return self.succeeded + self.failed + self.dead + self.waiting + self.sent


@dataclass
class Blocker:
    delivery_id: int
    status: str
    next_attempt_at: datetime


Locked = list[tuple[Delivery, Blocker | None]]
Lock = Callable[[set[int] | None], Locked]


# --- follow-up events published inside a batch ----------------------------------------------

_collected: ContextVar[list[Claim] | None] = ContextVar("domain_events_collected", default=None)


def collect(claims: Sequence[Claim]) -> bool:
    """Keep claims recorded by a handler of the running batch: the batch reports them (as
    `follow_ups`) once it has committed, and its caller hands them on. False outside a batch."""
    collected = _collected.get()
    if collected is None:
        return False
    collected.extend(claims)
    return True


@contextmanager
def _collecting() -> Iterator[list[Claim]]:
    collected: list[Claim] = []
    reset = _collected.set(collected)
    try:
        yield collected
    finally:
        _collected.reset(reset)


# --- entry points ---------------------------------------------------------------------------


def execute(claims: Sequence[Claim]) -> Report:
    """Run the deliveries of `claims` whose lease is still valid.

    The rows are locked without SKIP LOCKED: the lease token says they are ours, and a lock held
    by someone else is a relay's claim scan passing over them, which ends in milliseconds.
    """
    if not claims:
        return Report()
    outside = [c for c in claims if not _atomic(c)]
    report = Report()
    for claim in outside:
        report.add(_run_outside(claim))
    claims = [c for c in claims if _atomic(c)]
    if claims:
        report.add(_execute_atomic(claims))
    return report


def _atomic(claim: Claim) -> bool:
    subscription = subscriptions.get(claim.handler)
    return subscription is None or subscription.atomic


def _execute_atomic(claims: Sequence[Claim]) -> Report:
    tokens: dict[int, UUID] = {c.delivery_id: c.token for c in claims}

    def lock(only: set[int] | None) -> Locked:
        ids = [i for i in tokens if only is None or i in only]
        if connection.vendor == "postgresql":
            params = {"ids": ids, "tokens": list({tokens[i] for i in ids})}
            rows = _fetch_locked(sql.LOCK_LEASED, params)
        else:
            qs = Delivery.objects.filter(id__in=ids, status__in=Delivery.OPEN, lease_token__in=set(tokens.values()))
            rows = _orm_locked(qs)
        return [(d, b) for d, b in rows if d.lease_token == tokens[d.pk]]

    return _run(lock)


def run_due_here(limit: int, handlers: Sequence[str]) -> Report:
    """Claim and run due deliveries of in-process `handlers`, in one transaction.

    Nothing here talks to a broker or the network, so the claim is the row lock itself: a relay
    that dies mid-batch rolls back and its rows are due again at once.
    """
    if not handlers:
        return Report()
    chosen: list[int] = []

    def lock(only: set[int] | None) -> Locked:
        if chosen:
            # The careful pass, or one delivery at a time: the rows this relay already chose.
            ids = [i for i in chosen if only is None or i in only]
            if connection.vendor == "postgresql":
                return _fetch_locked(sql.LOCK_CHOSEN, {"ids": ids})
            return _orm_locked(Delivery.objects.filter(pk__in=ids, status__in=Delivery.OPEN))
        if connection.vendor == "postgresql":
            rows = _fetch_locked(sql.LOCK_DUE, {"handlers": list(handlers), "now": timezone.now(), "limit": limit})
        else:
            due = Delivery.objects.filter(
                handler__in=handlers, status__in=Delivery.OPEN, next_attempt_at__lte=timezone.now()
            ).order_by("next_attempt_at")[:limit]
            rows = _orm_locked(Delivery.objects.filter(pk__in=list(due.values_list("pk", flat=True))))
        chosen[:] = [d.pk for d, _ in rows]
        return rows

    return _run(lock)


def _run_outside(claim: Claim) -> Report:
    """A non-atomic handler (one that calls the outside world): no lock is held during the call.

    1. A short transaction checks the lease and the aggregate's order (or holds the delivery).
    2. The handler runs with no transaction of ours open; it makes its own short ones.
    3. A short transaction records the outcome, fenced by the lease token: if the lease was lost
       meanwhile, the outcome is dropped and whoever holds the delivery now runs it again. The
       handler's writes and its record do not commit together, so the handler must be idempotent
       (the event id is its idempotency key): this is the at-least-once window of external effects.
    """

    def lock(only: set[int] | None) -> Locked:
        if connection.vendor == "postgresql":
            rows = _fetch_locked(sql.LOCK_LEASED, {"ids": [claim.delivery_id], "tokens": [claim.token]})
        else:
            rows = _orm_locked(
                Delivery.objects.filter(pk=claim.delivery_id, status__in=Delivery.OPEN, lease_token=claim.token)
            )
        return [(d, b) for d, b in rows if d.lease_token == claim.token]

    report = Report()
    with transaction.atomic():
        rows = lock(None)
        if not rows:
            return report
        delivery, blocker = rows[0]
        if blocker is not None:
            return _run_locked(rows, careful=True)
    error = _run_one(delivery, {}, careful=True, bare=True)
    with transaction.atomic():
        rows = lock(None)
        if not rows:
            logger.warning("delivery %s lost its lease while its handler ran; outcome dropped", claim.delivery_id)
            return report
        current, _ = rows[0]
        if error is None:
            _mark_succeeded([current.pk], timezone.now())
            report.succeeded += 1
        else:
            _schedule_retry(current, error, timezone.now())
            current.save(update_fields=[*_CHANGED_FIELDS])
            report.dead += current.status == DeliveryStatus.DEAD
            report.failed += current.status != DeliveryStatus.DEAD
        metrics.count_outcomes(Tally([(current.handler, "succeeded" if error is None else str(current.status))]))
    return report


# --- locking --------------------------------------------------------------------------------


def _fetch_locked(statement: str, params: dict) -> Locked:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        fetched = cursor.fetchall()
    width_d, width_e = len(sql.DELIVERY_COLUMNS), len(sql.EVENT_COLUMNS)
    payload_at = sql.EVENT_COLUMNS.index("payload")
    out: Locked = []
    # One event usually comes with several deliveries (a row each): it is built once.
    stored_events: dict[int, StoredEvent] = {}
    for row in fetched:
        delivery = Delivery.from_db("default", sql.DELIVERY_COLUMNS, row[:width_d])
        stored = stored_events.get(delivery.stored_event_id)
        if stored is None:
            event_values = list(row[width_d : width_d + width_e])
            if isinstance(event_values[payload_at], str):
                event_values[payload_at] = json.loads(event_values[payload_at])
            stored = stored_events[delivery.stored_event_id] = StoredEvent.from_db(
                "default", sql.EVENT_COLUMNS, event_values
            )
        delivery.stored_event = stored
        blocker_id, blocker_status, blocker_due, uncovered = row[width_d + width_e :]
        blocker = Blocker(blocker_id, blocker_status, blocker_due) if blocker_id is not None else None
        if blocker is None and uncovered is not None:
            blocker = _cover_before(delivery)
        out.append((delivery, blocker))
    return out


def _cover_before(delivery: Delivery) -> Blocker | None:
    """Write the deliveries of the aggregate's earlier events that a publisher without the handler
    left out (a rolling deploy), and return the first of them: the delivery waits behind it."""
    found = subscribers.cover_before(delivery.handler, delivery.aggregate_id, delivery.revision)
    return Blocker(*found) if found else None


def _orm_locked(qs) -> Locked:
    """SQLite and odd cases: lock (SQLite has one writer anyway), then look up blockers per row."""
    rows = list(
        qs.select_for_update(of=("self",)).select_related("stored_event").order_by("stored_event__position", "id")
    )
    locked = {d.pk for d in rows}
    out: Locked = []
    for delivery in rows:
        found = (
            Delivery.objects.filter(
                handler=delivery.handler,
                aggregate_id=delivery.aggregate_id,
                status__in=Delivery.BLOCKING,
                revision__lt=delivery.revision,
            )
            .exclude(pk__in=locked)
            .order_by("revision")
            .values_list("pk", "status", "next_attempt_at")
            .first()
        )
        if not found and (delivery.revision or 0) > 1:
            found = subscribers.cover_before(delivery.handler, delivery.aggregate_id, delivery.revision)
        out.append((delivery, Blocker(*found) if found else None))
    return out


# --- running a batch ------------------------------------------------------------------------


class _RunCarefully(Exception):
    """The optimistic pass met a failing handler: roll the pass back, record that failure, and run
    the rest of the batch handler by handler."""

    def __init__(self, delivery_id: int, error: str) -> None:
        super().__init__(error)
        self.delivery_id = delivery_id
        self.error = error


class _Transient(Exception):
    """A deadlock or serialization failure: run the batch again, one delivery per transaction."""


def _is_transient(exc: BaseException) -> bool:
    while exc is not None:
        if getattr(exc, "sqlstate", None) in TRANSIENT_SQLSTATES:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _run(lock: Lock) -> Report:
    try:
        return _run_batch(lock, None)
    except _Transient:
        logger.info("a batch met a deadlock or serialization failure; running it one delivery at a time")
    report = Report()
    ids = _ids_of(lock)
    for delivery_id in ids:
        for attempt in range(TRANSIENT_TRIES):
            try:
                report.add(_run_batch(lock, {delivery_id}))
                break
            except _Transient:
                time.sleep(0.01 * (attempt + 1) * random.uniform(1, 2))
        else:
            logger.warning("delivery %s kept meeting deadlocks; it stays open for its next claim", delivery_id)
    return report


def _ids_of(lock: Lock) -> list[int]:
    with transaction.atomic():
        return [d.pk for d, _ in lock(None)]


def _run_batch(lock: Lock, only: set[int] | None) -> Report:
    """Run a batch in one transaction; on any failure, again with a savepoint per handler."""
    known_failures: dict[int, str] = {}
    try:
        with _collecting() as follow_ups, transaction.atomic():
            report = _run_locked(lock(only), careful=False)
        report.follow_ups = follow_ups
        return report
    except _RunCarefully as failure:
        known_failures[failure.delivery_id] = failure.error
    except _Transient:
        raise
    except DatabaseError as exc:
        if _is_transient(exc):
            raise _Transient from exc
        logger.info("a batch failed at commit; running it again handler by handler", exc_info=True)
    try:
        with _collecting() as follow_ups, transaction.atomic():
            _check_constraints_per_statement()
            report = _run_locked(lock(only), careful=True, known_failures=known_failures)
    except DatabaseError as exc:
        if _is_transient(exc):
            raise _Transient from exc
        raise
    report.follow_ups = follow_ups
    return report


def _run_locked(rows: Locked, *, careful: bool, known_failures: dict[int, str] | None = None) -> Report:
    report = Report()
    if not rows:
        return report
    now = timezone.now()
    events: dict[int, DomainEvent | Exception] = {}
    succeeded: list[int] = []
    changed: list[Delivery] = []
    outcomes: Tally[tuple[str, str]] = Tally()
    # (handler, aggregate) whose earlier delivery in this batch did not succeed, and which one.
    closed: dict[tuple[str, UUID], Delivery] = {}
    # What the handlers publish goes to their aggregates' streams: take them in one order first.
    streams.lock_existing(d.aggregate_id for d, b in rows if b is None)
    for delivery, blocker in rows:
        key = (delivery.handler, delivery.aggregate_id)
        if key in closed:
            earlier = closed[key]
            blocker = Blocker(earlier.pk, earlier.status, earlier.next_attempt_at)
        if blocker is not None:
            _hold(delivery, blocker)
            changed.append(delivery)
            report.waiting += 1
            continue
        if known_failures and delivery.pk in known_failures:
            error = known_failures[delivery.pk]
        else:
            error = _run_one(delivery, events, careful=careful)
        if error is None:
            succeeded.append(delivery.pk)
            outcomes[delivery.handler, "succeeded"] += 1
            report.succeeded += 1
            continue
        _schedule_retry(delivery, error, now)
        outcomes[delivery.handler, str(delivery.status)] += 1
        closed[key] = delivery
        changed.append(delivery)
        if delivery.status == DeliveryStatus.DEAD:
            report.dead += 1
        else:
            report.failed += 1
    if succeeded:
        _mark_succeeded(succeeded, now)
    metrics.count_outcomes(outcomes)
    if changed:
        for delivery in changed:
            delivery.updated_at = now
        Delivery.objects.bulk_update(changed, _CHANGED_FIELDS)
    return report


_CHANGED_FIELDS = [
    "status",
    "attempts",
    "next_attempt_at",
    "lease_token",
    "last_error",
    "held_by",
    "sent_at",
    "started_at",
    "updated_at",
]


def _hold(delivery: Delivery, blocker: Blocker) -> None:
    """Wait behind `blocker` without polling: until its next attempt, or until released."""
    dead = blocker.status == DeliveryStatus.DEAD
    delivery.held_by = blocker.delivery_id
    delivery.lease_token = None
    delivery.sent_at = delivery.started_at = None
    delivery.next_attempt_at = UNTIL_RELEASED if dead else max(blocker.next_attempt_at, timezone.now())
    delivery.last_error = (
        f"held by a dead letter: delivery #{blocker.delivery_id} of an earlier event"
        if dead
        else f"waiting for an earlier event of the same aggregate (delivery #{blocker.delivery_id})"
    )


def _mark_succeeded(delivery_ids: list[int], now) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql.MARK_SUCCEEDED, {"ids": delivery_ids, "now": now})
        return
    Delivery.objects.filter(pk__in=delivery_ids).update(
        status=DeliveryStatus.SUCCEEDED,
        attempts=F("attempts") + 1,
        lease_token=None,
        last_error="",
        held_by=None,
        completed_at=now,
        updated_at=now,
    )
    release_held(delivery_ids, now)


def release_held(delivery_ids: Sequence[int], now) -> int:
    """Make due at once what waited behind `delivery_ids` (they succeeded or were skipped); a row
    under someone's lease is left to its holder."""
    return Delivery.objects.filter(
        held_by__in=list(delivery_ids), status__in=Delivery.OPEN, lease_token__isnull=True
    ).update(held_by=None, next_attempt_at=now, last_error="", updated_at=now)


def _check_constraints_per_statement() -> None:
    """Make deferred constraints (Django's foreign keys) fire inside each handler's savepoint.

    Otherwise a handler that writes a dangling reference passes its savepoint and breaks the
    commit of the whole batch.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql.CONSTRAINTS_IMMEDIATE)


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


def _run_one(
    delivery: Delivery, events: dict[int, DomainEvent | Exception], *, careful: bool, bare: bool = False
) -> str | None:
    """Run one handler; returns the error text, or None on success.

    In the optimistic pass a failure aborts the whole pass (it is recorded, not run again); in the
    careful pass the handler runs in its own savepoint and its failure is returned. `bare`: no
    transaction of ours is open (a non-atomic handler), and any failure is the handler's own.
    """
    subscription = subscriptions.get(delivery.handler)
    stored = delivery.stored_event
    # The event's private values (a payment token) are masked in every log line of the run and in
    # the error text stored on the delivery, whatever the handler put in its exception.
    with (
        log_scope(
            handler=delivery.handler,
            event_id=stored.event_id,
            tenant_id=stored.tenant_id,
            correlation_id=stored.correlation_id,
            causation_id=stored.causation_id,
        ),
        private_values(stored.private_values()),
    ):
        try:
            if subscription is None:
                raise LookupError(f"no handler named {delivery.handler!r} is subscribed in this process")
            event = _load(delivery, events)
            with traced(event.correlation_id, causation_id=event.event_id):
                if careful and not bare:
                    with transaction.atomic():
                        subscription.handler(event)
                else:
                    subscription.handler(event)
        except Exception as exc:
            if _is_transient(exc) and not bare:
                raise _Transient from exc
            logger.warning("handler %s failed on %s: %r", delivery.handler, stored.ref, exc, exc_info=True)
            error = kept_error(mask_error(f"{type(exc).__name__}: {exc}"))
            if not careful:
                raise _RunCarefully(delivery.pk, error) from exc
            return error
        logger.info("%s ran on %s", delivery.handler, stored.ref)
    return None


def _schedule_retry(delivery: Delivery, error: str, now) -> None:
    delivery.attempts += 1
    delivery.last_error = error
    delivery.lease_token = None
    delivery.held_by = None
    delivery.sent_at = delivery.started_at = None
    delay = handler_retry_policy(delivery.handler).delay(delivery.attempts)
    if delay is None:
        delivery.status = DeliveryStatus.DEAD
        delivery.next_attempt_at = now
        logger.error("delivery %s of %s is dead after %d attempts", delivery.pk, delivery.handler, delivery.attempts)
        return
    delivery.status = DeliveryStatus.FAILED
    delivery.next_attempt_at = now + timedelta(seconds=delay)
