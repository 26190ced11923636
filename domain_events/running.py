"""Running one handler on one delivery's event, and telling its failures apart.

A handler's failure is its own (recorded on the delivery and retried); a deadlock or a
serialization failure is nobody's (`Transient`: the executor runs the batch again, one delivery
per transaction, and counts no attempt). A failure that leaves the connection or the batch's
transaction unusable (`BrokenBatch`) ends the batch: the executor runs it again one delivery per
transaction, where only the delivery that breaks it fails.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any
from uuid import UUID

from django.db import connection, transaction

from core import tracing
from core.log_context import log_scope
from core.masking import mask_error, private_values
from domain_events.context import traced
from domain_events.events import DomainEvent
from domain_events.models import Delivery, StoredEvent
from domain_events.registry import EventLoadError, registry
from domain_events.retry import kept_error
from domain_events.subscriptions import subscriptions

logger = logging.getLogger(__name__)

# The stored event whose handler is running: what the executor already read of it, for a handler
# that needs its position (`position_of`).
_handling: ContextVar[StoredEvent | None] = ContextVar("shelfwise_handling", default=None)


def position_of(event_id: UUID) -> int | None:
    """The position of the event with `event_id` if a handler is running on it here, else None
    (the caller reads it itself)."""
    stored = _handling.get()
    return stored.position if stored is not None and stored.event_id == event_id else None


@contextlib.contextmanager
def _handling_event(stored: StoredEvent) -> Iterator[None]:
    token = _handling.set(stored)
    try:
        yield
    finally:
        _handling.reset(token)


class Deferred:
    """What the handlers of an optimistic pass left to its end (`defer`): for each kind, the
    function that writes them all and the items, in the order of the pass (by aggregate, each
    aggregate's in position order)."""

    def __init__(self) -> None:
        self._kinds: dict[str, tuple[Callable[[list[Any]], object], list[Any]]] = {}

    def add(self, kind: str, write: Callable[[list[Any]], object], item: object) -> None:
        self._kinds.setdefault(kind, (write, []))[1].append(item)

    def write(self) -> None:
        for write, items in self._kinds.values():
            write(items)
        self._kinds.clear()


# The optimistic pass running here, if any (`executor._run_rows`).
_deferred: ContextVar[Deferred | None] = ContextVar("shelfwise_deferred", default=None)


@contextlib.contextmanager
def deferring(deferred: Deferred | None) -> Iterator[None]:
    token = _deferred.set(deferred)
    try:
        yield
    finally:
        _deferred.reset(token)


def defer(kind: str, write: Callable[[list[Any]], object], item: object) -> bool:
    """Leave `item` to the end of the optimistic pass of a batch running here, to be written with
    the others of its `kind` by one call of `write(items)`, in the batch's transaction before the
    outcomes: True. Elsewhere (a careful pass, with a savepoint per handler; no batch) False: the
    caller writes it now.

    One write for many events is what the pass saves; isolation is kept because a failing write
    fails the pass, which runs again handler by handler, each writing its own. Only for a write
    that no handler of the same pass reads: it is not there until the pass's end."""
    deferred = _deferred.get()
    if deferred is None:
        return False
    deferred.add(kind, write, item)
    return True


TRANSIENT_SQLSTATES = {"40P01", "40001"}  # deadlock detected, serialization failure


class RunCarefully(Exception):
    """The optimistic pass met a failing handler: roll the pass back, record that failure, and run
    the rest of the batch handler by handler. Without a delivery (a failed write left to the end of
    the pass, `defer`), no failure is known: the careful pass finds it."""

    def __init__(self, delivery_id: int | None, error: str) -> None:
        super().__init__(error)
        self.delivery_id = delivery_id
        self.error = error


class Transient(Exception):
    """A deadlock or serialization failure: run the batch again, one delivery per transaction."""


class BrokenBatch(Exception):
    """The connection or the batch's transaction cannot go on (a lost backend, a handler stopped in
    the middle of a statement): run the batch again, one delivery per transaction."""


class HandlerTimedOut(Exception):
    """A handler ran past its time limit (`HANDLER_TIME_LIMIT`, in a relay's batch)."""


def connection_broken() -> bool:
    """Whether the connection cannot carry on its transaction: closed, or stuck in a statement."""
    raw = connection.connection
    if raw is None:
        return False
    if getattr(raw, "closed", False):
        return True
    info = getattr(raw, "info", None)
    if info is None:  # not psycopg 3 (SQLite)
        return False
    from psycopg.pq import TransactionStatus

    return info.transaction_status in (TransactionStatus.UNKNOWN, TransactionStatus.ACTIVE)


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise `HandlerTimedOut` in the block once it has run `seconds` (main thread only: a relay)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(*_: object) -> None:
        raise HandlerTimedOut(f"the handler ran past its time limit of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def is_transient(exc: BaseException) -> bool:
    while exc is not None:
        if getattr(exc, "sqlstate", None) in TRANSIENT_SQLSTATES:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


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


def span_attributes(stored: StoredEvent) -> dict[str, str]:
    """What a span about `stored` says of it (`core.tracing`): nothing with tracing off."""
    if not tracing.enabled():
        return {}
    payload = stored.payload if isinstance(stored.payload, dict) else {}
    return tracing.event_attributes(
        event_type=stored.type, event_id=stored.event_id, tenant_id=stored.tenant_id, order_id=payload.get("order_id")
    )


def run_one(
    delivery: Delivery,
    events: dict[int, DomainEvent | Exception],
    *,
    careful: bool,
    bare: bool = False,
    limit: float | None = None,
) -> str | None:
    """Run one handler; returns the error text, or None on success.

    In the optimistic pass a failure aborts the whole pass (it is recorded, not run again); in the
    careful pass the handler runs in its own savepoint and its failure is returned, unless it left
    the connection unusable (`BrokenBatch`). `bare`: no transaction of ours is open (a non-atomic
    handler), and any failure is the handler's own. `limit`: seconds the handler may run.
    """
    subscription = subscriptions.get(delivery.handler)
    stored = delivery.stored_event
    span = tracing.handler_span(delivery.handler, traceparent=stored.traceparent, attributes=span_attributes(stored))
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
            with (
                traced(event.correlation_id, causation_id=event.event_id, actor=event.actor),
                _handling_event(stored),
                span,
                time_limit(limit),
            ):
                if careful and not bare:
                    with transaction.atomic():
                        subscription.handler(event)
                else:
                    subscription.handler(event)
        except Exception as exc:
            if is_transient(exc) and not bare:
                raise Transient from exc
            if careful and not bare and (connection_broken() or connection.needs_rollback):
                logger.warning("handler %s on %s left the connection unusable: %r", delivery.handler, stored.ref, exc)
                raise BrokenBatch(kept_error(mask_error(f"{type(exc).__name__}: {exc}"))) from exc
            logger.warning("handler %s failed on %s: %r", delivery.handler, stored.ref, exc, exc_info=True)
            error = kept_error(mask_error(f"{type(exc).__name__}: {exc}"))
            if not careful:
                raise RunCarefully(delivery.pk, error) from exc
            return error
        logger.info("%s ran on %s", delivery.handler, stored.ref)
    return None
