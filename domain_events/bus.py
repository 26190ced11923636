"""The event bus: one `event_bus` that modules subscribe to and publish through.

    event_bus.subscribe(OrderPlaced, reserve_stock_for_order, mode="on_commit", name="inventory.reserve_stock")

Modes:
- ``inline``: runs inside the publisher's transaction, before the event is stored; an exception
  rolls the whole operation back. For invariants only.
- ``on_commit``: runs in-process right after the commit (fast local work: projections, audit).
- ``celery``: one Celery task per (event, handler), for slow or external work.

Every ``on_commit`` and ``celery`` subscriber gets a delivery record in the publisher's transaction,
so the stored event is the guarantee: dispatch after commit is only the fast path, and the relay
hands on whatever it missed. ``track`` subscribes a position reader instead (see
``tracking``). Queries (``ask``/``answer``) are the synchronous counterpart: exactly
one module answers a query type, and a missing answer fails loudly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Literal, TypeVar

from django.db import transaction

from core import tracing
from domain_events import fastpath, metrics, recording, streams
from domain_events.actors import SYSTEM
from domain_events.context import current_trace, new_correlation_id
from domain_events.events import DomainEvent
from domain_events.queries import Query
from domain_events.subscriptions import (
    BatchHandler,
    BatchScope,
    Handler,
    Mode,
    Subscription,
    Tracker,
    subscriptions,
)

logger = logging.getLogger(__name__)

E = TypeVar("E", bound=DomainEvent)
R = TypeVar("R")

__all__ = ["EventBus", "Mode", "NoQueryHandler", "PublishOutsideTransaction", "Subscription", "event_bus"]


class PublishOutsideTransaction(RuntimeError):
    """`publish` was called with no transaction open: the event could outlive a failed change."""


class NoQueryHandler(LookupError):
    pass


def _types(event_types: type[DomainEvent] | Iterable[type[DomainEvent]]) -> tuple[type[DomainEvent], ...]:
    return (event_types,) if isinstance(event_types, type) else tuple(event_types)


class EventBus:
    def __init__(self) -> None:
        self._query_handlers: dict[type[Query], Callable[[Any], Any]] = {}

    # --- subscribing ----------------------------------------------------------------------

    def subscribe(
        self,
        event_types: type[DomainEvent] | Iterable[type[DomainEvent]],
        handler: Handler,
        *,
        mode: Mode | str,
        name: str,
        queue: str | None = None,
        retry_schedule: Iterable[int] | None = None,
        atomic: bool = True,
        batch_scope: BatchScope | None = None,
    ) -> Subscription:
        """Subscribe `handler` under a stable `name` (it keys the delivery records).

        Subscribing to `DomainEvent` itself receives every event type. Subscribing the same
        name again with the same handler adds event types to it. `atomic=False` (celery mode
        only) runs a handler that talks to the outside world outside the executor's transaction:
        it must be idempotent itself (the event id is its idempotency key). `batch_scope` (with
        `atomic=False`): a context manager a worker opens once around a batch of the handler's
        deliveries, to share what the calls need (one SMTP connection for a batch of e-mails).
        """
        schedule = tuple(retry_schedule) if retry_schedule is not None else None
        return subscriptions.add(
            Subscription(
                name,
                handler,
                Mode(mode),
                _types(event_types),
                queue,
                schedule,
                atomic=atomic,
                batch_scope=batch_scope,
            )
        )

    def track(
        self,
        event_types: type[DomainEvent] | Iterable[type[DomainEvent]],
        handler: BatchHandler,
        *,
        name: str,
        batch_size: int = 500,
        start: Literal["beginning", "now"] = "beginning",
        retry_schedule: Iterable[int] | None = None,
    ) -> Tracker:
        """Subscribe a position reader: `handler(events, context)` gets every matching stored event
        in `position` order, in batches, and its writes commit with its checkpoint.

        A failing batch is tried again on `retry_schedule` (seconds; the last step repeats), by
        default `HANDLER_RETRY_SCHEDULE`."""
        schedule = tuple(retry_schedule) if retry_schedule is not None else None
        return subscriptions.add_tracker(Tracker(name, handler, _types(event_types), batch_size, start, schedule))

    def subscriptions_for(self, event_cls: type[DomainEvent]) -> tuple[Subscription, ...]:
        return subscriptions.for_event(event_cls)

    def subscription(self, name: str) -> Subscription | None:
        return subscriptions.get(name)

    def subscriptions(self) -> tuple[Subscription, ...]:
        return subscriptions.all()

    # --- publishing -----------------------------------------------------------------------

    def publish(self, event: E) -> E:
        """Record `event` in the caller's transaction; dispatch it once that commits.

        Fills in the correlation id (the request's or the handled event's), the causation id
        (the handled event, or the event itself when nothing caused it) and the actor (the
        request's user, the command's `--by`, the handled event's actor, else `system`); with
        tracing on, the `traceparent` of the active span. Returns the event as stored.
        """
        if not transaction.get_connection().in_atomic_block:
            raise PublishOutsideTransaction(f"publish({event.type}) needs an open transaction (transaction.atomic)")
        event = self._traced(event)
        found = subscriptions.for_event(type(event))
        for subscription in found:
            if subscription.mode is Mode.INLINE:
                subscription.handler(event)
        claims = recording.record(event, [s for s in found if s.mode is not Mode.INLINE])
        metrics.count_published(event.type)
        if claims:
            fastpath.after_commit(claims)
        return event

    def publish_all(self, events: Sequence[DomainEvent]) -> list[DomainEvent]:
        """`publish` each of `events`, in order, after locking their aggregates' streams in one
        order: for a transaction that records events of several aggregates (see `streams`)."""
        if not transaction.get_connection().in_atomic_block:
            raise PublishOutsideTransaction("publish_all needs an open transaction (transaction.atomic)")
        streams.lock(events)
        return [self.publish(event) for event in events]

    @staticmethod
    def _traced(event: E) -> E:
        trace = current_trace()
        correlation_id = event.correlation_id or (trace.correlation_id if trace else "") or new_correlation_id()
        causation_id = event.causation_id or (trace.causation_id if trace else None) or event.event_id
        actor = event.actor or (trace.actor if trace else SYSTEM)
        traceparent = event.traceparent or tracing.current_traceparent()
        if (
            correlation_id == event.correlation_id
            and causation_id == event.causation_id
            and actor == event.actor
            and traceparent == event.traceparent
        ):
            return event
        return replace(
            event, correlation_id=correlation_id, causation_id=causation_id, actor=actor, traceparent=traceparent
        )

    # --- queries --------------------------------------------------------------------------

    def answer(self, query_type: type[Query], handler: Callable[[Any], Any]) -> None:
        """Make `handler` the one answer to `query_type` (registered in the owner's `ready()`)."""
        current = self._query_handlers.get(query_type)
        if current is not None and current is not handler:
            raise ValueError(f"{query_type.__name__} already has a handler")
        self._query_handlers[query_type] = handler

    @contextmanager
    def answering(self, query_type: type[Query], handler: Callable[[Any], Any]) -> Iterator[None]:
        """Let `handler` answer `query_type` for the duration of the block (tests, maintenance scripts)."""
        previous = self._query_handlers.get(query_type)
        self._query_handlers[query_type] = handler
        try:
            yield
        finally:
            if previous is None:
                self._query_handlers.pop(query_type, None)
            else:
                self._query_handlers[query_type] = previous

    def ask(self, query: Query) -> Any:
        try:
            handler = self._query_handlers[type(query)]
        except KeyError:
            raise NoQueryHandler(f"no module answers {type(query).__name__}") from None
        return handler(query)


event_bus = EventBus()
