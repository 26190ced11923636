"""The executor: runs deliveries, each in the same transaction as its delivery record.

A batch locks its delivery rows (`locking`), checks each one's lease token and that no earlier
event of the same aggregate (by revision) is unfinished or dead for the same handler, runs the
handlers (`running`) and records the outcomes (`outcomes`), in one transaction. The handler's
writes and its record therefore commit together: a redelivered event finds the record `succeeded`
and is not applied again.

- A Celery worker's batch (`execute(..., isolated=True)`, see `batches`) runs in one transaction
  with a savepoint per delivery: a failing handler rolls back only its own writes and is recorded
  with its own attempts and retry schedule; a handler past `HANDLER_TIME_LIMIT` fails the same
  way. A relay's batch (`run_due_here`) and the fast path's claimed batches (`execute`) make one
  optimistic commit; when a handler fails (in a relay, also past its time limit), the batch is
  rolled back and run again with a savepoint per handler, and the handler that failed is
  recorded, not run again.
- In an optimistic pass a handler may leave a write to the pass's end (`running.defer`), to be
  made once for all the pass's events (the webhooks fan-out: one query and one insert for a batch
  of events). A failing write fails the pass like a failing handler, with no delivery to blame:
  the batch runs again with a savepoint per handler, each writing its own.
- An error that breaks the connection or the batch's transaction (a lost backend, a handler
  stopped in the middle of a statement, a failed commit) ends the batch: it runs again one delivery
  per transaction, and a delivery that breaks its own transaction too is recorded as failed in a
  fresh one. The other deliveries' effects are neither lost nor repeated.
- A deadlock or serialization failure is nobody's fault: the batch runs again one delivery per
  transaction, and no attempt is counted.
- A delivery held behind an earlier one is not polled: it sleeps until its blocker's next attempt,
  or until released when the blocker succeeds or is skipped (a dead blocker holds it for good).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from datetime import datetime
from uuid import UUID, uuid4

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from core import tracing
from domain_events import metrics, sql
from domain_events.claims import Claim, months_of
from domain_events.conf import domain_events_settings
from domain_events.events import DomainEvent
from domain_events.locking import Blocker, Lock, Locked, fetch_locked, fetch_started, orm_locked
from domain_events.models import Delivery, DeliveryStatus
from domain_events.outcomes import (
    hold,
    mark_succeeded,
    release_holds_of_ended_blockers,
    save_outcomes,
    schedule_retry,
)
from domain_events.running import (
    BrokenBatch,
    Deferred,
    RunCarefully,
    Transient,
    connection_broken,
    deferring,
    is_transient,
    run_one,
    span_attributes,
)
from domain_events.subscriptions import subscriptions

logger = logging.getLogger(__name__)

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
    # Deliveries held behind a blocker that was not dead (id and event's `recorded_at`): checked
    # again once the hold commits.
    held: list[tuple[int, datetime]] = field(default_factory=list)

    def add(self, other: Report) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def handled(self) -> int:
        return self.succeeded + self.failed + self.dead + self.waiting + self.sent


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


def execute(claims: Sequence[Claim], *, isolated: bool = False) -> Report:
    """Run the deliveries of `claims` whose lease is still valid.

    The rows are locked without SKIP LOCKED: the lease token says they are ours, and a lock held
    by someone else is a relay's claim scan passing over them, which ends in milliseconds.

    `isolated` (a worker's batch, `batches`): as in a relay's batch, a savepoint per delivery from
    the start and each handler under `HANDLER_TIME_LIMIT`.
    """
    if not claims:
        return Report()
    outside = [c for c in claims if not _atomic(c)]
    report = Report()
    limit = handler_time_limit() if isolated else None
    for claim in outside:
        report.add(_run_outside(claim, limit=limit))
    claims = [c for c in claims if _atomic(c)]
    if claims:
        report.add(_execute_atomic(claims, isolated=isolated))
    return report


def handler_time_limit() -> float | None:
    """`HANDLER_TIME_LIMIT` in seconds (None: no limit)."""
    setting = domain_events_settings()["HANDLER_TIME_LIMIT"]
    return setting.total_seconds() if setting else None


def _atomic(claim: Claim) -> bool:
    subscription = subscriptions.get(claim.handler)
    return subscription is None or subscription.atomic


def _execute_atomic(claims: Sequence[Claim], *, isolated: bool = False) -> Report:
    tokens: dict[int, UUID] = {c.delivery_id: c.token for c in claims}
    recorded: dict[int, datetime | None] = {c.delivery_id: c.event_recorded_at for c in claims}

    def lock(only: set[int] | None) -> Locked:
        ids = [i for i in tokens if only is None or i in only]
        if connection.vendor == "postgresql":
            rows = fetch_locked(*_leased(ids, [tokens[i] for i in ids], [recorded[i] for i in ids]))
        else:
            qs = Delivery.objects.filter(id__in=ids, status__in=Delivery.OPEN, lease_token__in=set(tokens.values()))
            rows = orm_locked(qs)
        return [(d, b) for d, b in rows if d.lease_token == tokens[d.pk]]

    return _run(lock, isolated=isolated)


def _leased(ids: list[int], tokens: list[UUID], recorded: list[datetime | None]) -> tuple[str, dict]:
    """`sql.LOCK_LEASED` and its parameters; in the claims' months alone where they are known."""
    params = {"ids": ids, "tokens": list(set(tokens))}
    months = months_of(recorded)
    if months is None:
        return sql.LOCK_LEASED, params
    return sql.LOCK_LEASED_IN_MONTHS, {**params, "recorded": months}


def run_due_here(limit: int, handlers: Sequence[str]) -> Report:
    """Claim and run due deliveries of in-process `handlers`, in one transaction.

    Nothing here talks to a broker or the network, so the claim is the row lock itself: a relay
    that dies mid-batch rolls back and its rows are due again at once.
    """
    if not handlers:
        return Report()
    chosen: dict[int, datetime] = {}

    def lock(only: set[int] | None) -> Locked:
        if chosen:
            # The careful pass, or one delivery at a time: the rows this relay already chose.
            ids = [i for i in chosen if only is None or i in only]
            if connection.vendor == "postgresql":
                return fetch_locked(sql.LOCK_CHOSEN, {"ids": ids, "recorded": sorted({chosen[i] for i in ids})})
            return orm_locked(Delivery.objects.filter(pk__in=ids, status__in=Delivery.OPEN))
        if connection.vendor == "postgresql":
            rows = fetch_locked(sql.LOCK_DUE, {"handlers": list(handlers), "now": timezone.now(), "limit": limit})
        else:
            due = Delivery.objects.filter(
                handler__in=handlers, status__in=Delivery.OPEN, next_attempt_at__lte=timezone.now()
            ).order_by("next_attempt_at")[:limit]
            rows = orm_locked(Delivery.objects.filter(pk__in=list(due.values_list("pk", flat=True))))
        chosen.clear()
        chosen.update((d.pk, d.event_recorded_at) for d, _ in rows)
        return rows

    return _run(lock, isolated=True, optimistic=True)


def start_and_run(claim: Claim) -> Report | None:
    """A worker's delivery of a handler that calls out (`batches`, PostgreSQL): stamped as started
    (the row kept for `CELERY_RUN_LEASE`), its lease and its aggregate's order checked, in one
    statement; then run as `_run_outside` runs it. None: the message is stale (its lease taken
    over, the delivery finished or started by another copy of the message)."""
    params = {"id": claim.delivery_id, "token": claim.token}
    statement = sql.START_LEASED
    if claim.event_recorded_at is not None:
        statement, params["recorded"] = sql.START_LEASED_IN_MONTH, claim.event_recorded_at
    return _start_and_run(statement, params, lambda delivery: claim)


def take_and_run(handler: str) -> Report | None:
    """A worker with room in its batch (`batches`, PostgreSQL): take the oldest delivery of
    `handler`, a handler that calls out, whose message is still on its way; stamp it as started
    and check what holds it back in the same statement; then run it as `start_and_run` does. Its
    new lease token makes its own message stale. None: there was none to take."""
    token = uuid4()

    def taken(delivery: Delivery) -> Claim:
        logger.debug("took queued delivery %s of %s into this batch", delivery.pk, handler)
        return Claim(delivery.pk, token, handler, event_recorded_at=delivery.event_recorded_at)

    return _start_and_run(sql.TAKE_AND_START, {"token": token, "handler": handler}, taken)


def _start_and_run(statement: str, params: dict, claim_of: Callable[[Delivery], Claim]) -> Report | None:
    """Stamp a delivery as started for `CELERY_RUN_LEASE` with `statement`, which reads its event
    and what holds it back too, then run it outside any transaction of ours. None: nothing stamped."""
    now = timezone.now()
    started = fetch_started(
        statement, {**params, "now": now, "until": now + domain_events_settings()["CELERY_RUN_LEASE"]}
    )
    if started is None:
        return None
    delivery, clear = started
    # Held behind an earlier delivery, or an earlier event left without one: the lease check in a
    # transaction of its own holds it (or, its blocker gone meanwhile, runs it).
    return _run_outside(claim_of(delivery), limit=handler_time_limit(), checked=delivery if clear else None)


def _run_outside(claim: Claim, *, limit: float | None = None, checked: Delivery | None = None) -> Report:
    """A non-atomic handler (one that calls the outside world): no lock is held during the call.

    1. A short transaction checks the lease and the aggregate's order (or holds the delivery);
       skipped when the caller has `checked` them (`start_and_run`).
    2. The handler runs with no transaction of ours open; it makes its own short ones.
    3. A short transaction records the outcome, fenced by the lease token: if the lease was lost
       meanwhile, the outcome is dropped and whoever holds the delivery now runs it again. The
       handler's writes and its record do not commit together, so the handler must be idempotent
       (the event id is its idempotency key): this is the at-least-once window of external effects.
       A success is one statement on PostgreSQL.
    """

    def lock(only: set[int] | None) -> Locked:
        if connection.vendor == "postgresql":
            rows = fetch_locked(*_leased([claim.delivery_id], [claim.token], [claim.event_recorded_at]))
        else:
            rows = orm_locked(
                Delivery.objects.filter(pk=claim.delivery_id, status__in=Delivery.OPEN, lease_token=claim.token)
            )
        return [(d, b) for d, b in rows if d.lease_token == claim.token]

    report = Report()
    delivery = checked
    if delivery is None:
        with transaction.atomic():
            rows = lock(None)
            if not rows:
                return report
            delivery, blocker = rows[0]
            held = _run_locked(rows, careful=True) if blocker is not None else None
        if held is not None:
            return _after_holds(held)
    error = run_one(delivery, {}, careful=True, bare=True, limit=limit)
    if error is not None and (connection_broken() or connection.needs_rollback):
        _reset_connection()  # stopped in the middle of a statement of its own: record on a fresh one
    if error is None and connection.vendor == "postgresql":
        params = {"id": claim.delivery_id, "token": claim.token, "now": timezone.now()}
        statement = sql.MARK_SUCCEEDED_LEASED
        if claim.event_recorded_at is not None:
            statement, params["recorded"] = sql.MARK_SUCCEEDED_LEASED_IN_MONTH, claim.event_recorded_at
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            recorded = cursor.fetchone() is not None
        if not recorded:
            logger.warning("delivery %s lost its lease while its handler ran; outcome dropped", claim.delivery_id)
            return report
        report.succeeded += 1
        metrics.count_outcomes(Tally([(delivery.handler, "succeeded")]))
        return report
    with transaction.atomic():
        rows = lock(None)
        if not rows:
            logger.warning("delivery %s lost its lease while its handler ran; outcome dropped", claim.delivery_id)
            return report
        current, _ = rows[0]
        now = timezone.now()
        if error is None:
            mark_succeeded([current.pk], now, [current.event_recorded_at])
            report.succeeded += 1
        else:
            schedule_retry(current, error, now)
            save_outcomes([current], now)
            report.dead += current.status == DeliveryStatus.DEAD
            report.failed += current.status != DeliveryStatus.DEAD
        metrics.count_outcomes(Tally([(current.handler, "succeeded" if error is None else str(current.status))]))
    return report


# --- running a batch ------------------------------------------------------------------------


def _run(lock: Lock, *, isolated: bool = False, optimistic: bool = False) -> Report:
    """Run a batch; after a deadlock or a broken connection, one delivery per transaction.

    `isolated`: a savepoint per delivery from the start (or, `optimistic`, once a handler failed),
    each handler under `HANDLER_TIME_LIMIT` (a relay's batch); otherwise one optimistic commit
    first (`_run_batch`).
    """
    run = functools.partial(_run_isolated, optimistic=optimistic) if isolated else _run_batch
    try:
        return _after_holds(run(lock, None))
    except Transient:
        logger.info("a batch met a deadlock or serialization failure; running it one delivery at a time")
    except BrokenBatch:
        if connection.in_atomic_block:
            raise  # a caller's transaction is open around the batch: it is the caller's to end
        logger.warning("a batch broke its connection or transaction; running it one delivery per transaction")
        _reset_connection()
    report = Report()
    ids = _ids_of(lock)
    for delivery_id in ids:
        for attempt in range(TRANSIENT_TRIES):
            try:
                report.add(run(lock, {delivery_id}))
                break
            except Transient:
                time.sleep(0.01 * (attempt + 1) * random.uniform(1, 2))
            except BrokenBatch as broken:
                _reset_connection()
                report.add(_record_broken(lock, delivery_id, str(broken)))
                break
        else:
            logger.warning("delivery %s kept meeting deadlocks; it stays open for its next claim", delivery_id)
    return _after_holds(report)


def _after_holds(report: Report) -> Report:
    """Once holds have committed, release those whose blocker ended meanwhile (`outcomes`)."""
    if report.held:
        released = release_holds_of_ended_blockers(report.held, timezone.now())
        if released:
            logger.info("released %d deliveries whose blocker ended while they were held", released)
    return report


def _reset_connection() -> None:
    """Drop a connection that cannot go on; the next query opens a new one."""
    with contextlib.suppress(Exception):
        connection.close()


def _record_broken(lock: Lock, delivery_id: int, error: str) -> Report:
    """The delivery broke even its own transaction: record its failure in a fresh one (an attempt
    counted, its own retry schedule), so that it never holds the others back."""
    report = Report()
    with transaction.atomic():
        rows = lock({delivery_id})
        if not rows:
            return report
        delivery, _ = rows[0]
        now = timezone.now()
        schedule_retry(delivery, error, now)
        save_outcomes([delivery], now)
        metrics.count_outcomes(Tally([(delivery.handler, str(delivery.status))]))
    report.dead += delivery.status == DeliveryStatus.DEAD
    report.failed += delivery.status != DeliveryStatus.DEAD
    return report


def _run_isolated(lock: Lock, only: set[int] | None, *, optimistic: bool = False) -> Report:
    """Run a batch in one transaction with a savepoint (and a time limit) per delivery.

    A delivery alone in its batch needs no savepoint: the transaction is its own. If its handler
    fails, the transaction is rolled back and the failure recorded in a fresh one. A deferred
    constraint that fails at commit breaks the batch (`BrokenBatch`): each delivery then commits
    on its own, and only the offending one fails. `optimistic`: no savepoints until a handler
    fails; then the batch is rolled back and run again with them, the failed handler recorded, not
    run again.
    """
    limit = handler_time_limit()
    known_failures: dict[int, str] = {}
    try:
        try:
            with _collecting() as follow_ups, transaction.atomic():
                rows = lock(only)
                report = _run_locked(rows, careful=len(rows) > 1 and not optimistic, limit=limit)
        except RunCarefully as failure:
            if failure.delivery_id is not None:
                known_failures[failure.delivery_id] = failure.error
            with _collecting() as follow_ups, transaction.atomic():
                report = _run_locked(lock(only), careful=True, known_failures=known_failures, limit=limit)
    except (Transient, BrokenBatch):
        raise
    except DatabaseError as exc:
        if is_transient(exc):
            raise Transient from exc
        raise BrokenBatch(f"{type(exc).__name__}: {exc}") from exc
    report.follow_ups = follow_ups
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
    except RunCarefully as failure:
        if failure.delivery_id is not None:
            known_failures[failure.delivery_id] = failure.error
    except Transient:
        raise
    except DatabaseError as exc:
        if is_transient(exc):
            raise Transient from exc
        logger.info("a batch failed at commit; running it again handler by handler", exc_info=True)
    try:
        with _collecting() as follow_ups, transaction.atomic():
            _check_constraints_per_statement()
            report = _run_locked(lock(only), careful=True, known_failures=known_failures)
    except DatabaseError as exc:
        if is_transient(exc):
            raise Transient from exc
        raise
    report.follow_ups = follow_ups
    return report


def _run_locked(
    rows: Locked, *, careful: bool, known_failures: dict[int, str] | None = None, limit: float | None = None
) -> Report:
    with _batch_span(rows):
        return _run_rows(rows, careful=careful, known_failures=known_failures, limit=limit)


def _run_rows(
    rows: Locked, *, careful: bool, known_failures: dict[int, str] | None = None, limit: float | None = None
) -> Report:
    report = Report()
    if not rows:
        return report
    now = timezone.now()
    events: dict[int, DomainEvent | Exception] = {}
    succeeded: list[Delivery] = []
    changed: list[Delivery] = []
    outcomes: Tally[tuple[str, str]] = Tally()
    # (handler, aggregate) whose earlier delivery in this batch did not succeed, and which one.
    closed: dict[tuple[str, UUID], Delivery] = {}
    # What a handler records goes to its delivery's aggregate's stream, locked until the batch
    # ends: running the batch in aggregate id order takes those locks in one order, so two batches
    # never wait for each other in a circle, and an aggregate none of its handlers records on stays
    # free (the stable sort keeps each aggregate's deliveries in position order).
    rows = sorted(rows, key=_by_aggregate)
    # The optimistic pass lets handlers leave writes to its end (`running.defer`).
    deferred = None if careful else Deferred()
    with deferring(deferred):
        for delivery, blocker in rows:
            key = (delivery.handler, delivery.aggregate_id)
            if key in closed:
                earlier = closed[key]
                blocker = Blocker(earlier.pk, earlier.status, earlier.next_attempt_at)
            if blocker is not None:
                hold(delivery, blocker)
                changed.append(delivery)
                report.waiting += 1
                if blocker.status != DeliveryStatus.DEAD:
                    report.held.append((delivery.pk, delivery.event_recorded_at))
                continue
            if known_failures and delivery.pk in known_failures:
                error = known_failures[delivery.pk]
            else:
                error = run_one(delivery, events, careful=careful, limit=limit)
            if error is None:
                succeeded.append(delivery)
                outcomes[delivery.handler, "succeeded"] += 1
                report.succeeded += 1
                continue
            schedule_retry(delivery, error, now)
            outcomes[delivery.handler, str(delivery.status)] += 1
            closed[key] = delivery
            changed.append(delivery)
            if delivery.status == DeliveryStatus.DEAD:
                report.dead += 1
            else:
                report.failed += 1
    if deferred is not None:
        _write_deferred(deferred)
    if succeeded:
        mark_succeeded([d.pk for d in succeeded], now, sorted({d.event_recorded_at for d in succeeded}))
    metrics.count_outcomes(outcomes)
    if changed:
        save_outcomes(changed, now)
    return report


def _by_aggregate(row: tuple[Delivery, Blocker | None]) -> UUID:
    return row[0].aggregate_id


def _write_deferred(deferred: Deferred) -> None:
    """The writes the handlers of an optimistic pass left to its end. A failing one fails the pass
    with no delivery to blame: it runs again handler by handler, each writing its own in its own
    savepoint, where the failure is the delivery's own."""
    try:
        deferred.write()
    except Exception as exc:
        if is_transient(exc):
            raise Transient from exc
        logger.warning("a write left to the end of a batch failed; running the batch handler by handler", exc_info=True)
        raise RunCarefully(None, f"{type(exc).__name__}: {exc}") from exc


def _batch_span(rows: Locked):
    """A batch of several events links to each one's trace (`core.tracing`); one event's handlers
    need no span beside their own."""
    if not tracing.enabled():
        return nullcontext()
    stored = {d.stored_event.pk: d.stored_event for d, _ in rows}
    if len(stored) < 2:
        return nullcontext()
    return tracing.batch_span(
        "domain_events.run_batch",
        [(e.traceparent, span_attributes(e)) for e in stored.values()],
        kind="deliveries",
    )


def _check_constraints_per_statement() -> None:
    """Make deferred constraints (Django's foreign keys) fire inside each handler's savepoint.

    Otherwise a handler that writes a dangling reference passes its savepoint and breaks the
    commit of the whole batch.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql.CONSTRAINTS_IMMEDIATE)
