"""The event bus: one `event_bus` that modules subscribe to and publish through.

    event_bus.subscribe(OrderPlaced, reserve_stock_for_order, mode="on_commit", name="inventory.reserve_stock")

Modes:
- ``inline``: runs inside the publisher's transaction, before the event is stored; an exception
  rolls the whole operation back. For invariants only.
- ``on_commit``: runs in-process right after the commit (fast local work: projections, audit).
- ``celery``: one Celery task per (event, handler), for slow or external work.

Every ``on_commit`` and ``celery`` subscriber gets a delivery record in the publisher's transaction,
so the stored event is the guarantee: dispatch after commit is only the fast path, and the relay
hands on whatever it missed. Queries (``ask``/``answer``) are the synchronous counterpart: exactly
one module answers a query type, and a missing answer fails loudly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, TypeVar

from django.db import transaction

from domain_events.context import current_trace, new_correlation_id
from domain_events.events import DomainEvent
from domain_events.queries import Query

logger = logging.getLogger(__name__)

E = TypeVar("E", bound=DomainEvent)
R = TypeVar("R")
Handler = Callable[[Any], None]


class Mode(StrEnum):
    INLINE = "inline"
    ON_COMMIT = "on_commit"
    CELERY = "celery"


class PublishOutsideTransaction(RuntimeError):
    """`publish` was called with no transaction open: the event could outlive a failed change."""


class NoQueryHandler(LookupError):
    pass


@dataclass(frozen=True)
class Subscription:
    name: str
    handler: Handler
    mode: Mode
    event_types: tuple[type[DomainEvent], ...]
    queue: str | None = None
    retry_schedule: tuple[int, ...] | None = None

    def matches(self, event_cls: type[DomainEvent]) -> bool:
        return issubclass(event_cls, self.event_types)


class EventBus:
    def __init__(self) -> None:
        self._by_name: dict[str, Subscription] = {}
        self._cache: dict[type[DomainEvent], tuple[Subscription, ...]] = {}
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
    ) -> Subscription:
        """Subscribe `handler` under a stable `name` (it keys the delivery records).

        Subscribing to `DomainEvent` itself receives every event type. Subscribing the same
        name again with the same handler adds event types to it.
        """
        types = (event_types,) if isinstance(event_types, type) else tuple(event_types)
        mode = Mode(mode)
        schedule = tuple(retry_schedule) if retry_schedule is not None else None
        existing = self._by_name.get(name)
        if existing is not None:
            if existing.handler is not handler or existing.mode is not mode:
                raise ValueError(f"handler name {name!r} is already subscribed to another handler or mode")
            types = existing.event_types + tuple(t for t in types if t not in existing.event_types)
        subscription = Subscription(name, handler, mode, types, queue, schedule)
        self._by_name[name] = subscription
        self._cache.clear()
        return subscription

    def unsubscribe(self, name: str) -> None:
        self._by_name.pop(name, None)
        self._cache.clear()

    def subscriptions_for(self, event_cls: type[DomainEvent]) -> tuple[Subscription, ...]:
        found = self._cache.get(event_cls)
        if found is None:
            found = tuple(s for s in self._by_name.values() if s.matches(event_cls))
            self._cache[event_cls] = found
        return found

    def subscription(self, name: str) -> Subscription | None:
        return self._by_name.get(name)

    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(self._by_name.values())

    # --- publishing -----------------------------------------------------------------------

    def publish(self, event: E) -> E:
        """Record `event` in the caller's transaction; dispatch it once that commits.

        Fills in the correlation id (the request's or the handled event's) and the causation id
        (the handled event, or the event itself when nothing caused it). Returns the event as
        stored.
        """
        from domain_events import dispatch, outbox

        if not transaction.get_connection().in_atomic_block:
            raise PublishOutsideTransaction(f"publish({event.type}) needs an open transaction (transaction.atomic)")
        event = self._traced(event)
        subscriptions = self.subscriptions_for(type(event))
        for subscription in subscriptions:
            if subscription.mode is Mode.INLINE:
                subscription.handler(event)
        deferred = [s for s in subscriptions if s.mode is not Mode.INLINE]
        entries = outbox.record(event, deferred)
        if entries:
            dispatch.after_commit(entries)
        return event

    @staticmethod
    def _traced(event: E) -> E:
        trace = current_trace()
        correlation_id = event.correlation_id or (trace.correlation_id if trace else "") or new_correlation_id()
        causation_id = event.causation_id or (trace.causation_id if trace else None) or event.event_id
        if correlation_id == event.correlation_id and causation_id == event.causation_id:
            return event
        return replace(event, correlation_id=correlation_id, causation_id=causation_id)

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
