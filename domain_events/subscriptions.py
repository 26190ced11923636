"""Who listens: the one registry of subscriptions that the bus fills and the executor, the relays
and the workers read.

Two kinds of subscriber:
- per-event handlers (`Subscription`): one delivery record per (event, handler), run once each,
  ordered per aggregate;
- position readers (`Tracker`): read every matching stored event in global `position` order, in
  batches, from a checkpoint committed with their writes (projections, the audit chain).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from domain_events.events import DomainEvent
    from domain_events.tracking import TrackingContext

Handler = Callable[[Any], None]
BatchScope = Callable[[], AbstractContextManager[Any]]
BatchHandler = Callable[["Sequence[DomainEvent]", "TrackingContext"], None]
DEFAULT_QUEUE = "celery"


class Mode(StrEnum):
    INLINE = "inline"
    ON_COMMIT = "on_commit"
    CELERY = "celery"


@dataclass(frozen=True)
class Subscription:
    name: str
    handler: Handler
    mode: Mode
    event_types: tuple[type[DomainEvent], ...]
    queue: str | None = None
    retry_schedule: tuple[int, ...] | None = None
    # False: the handler calls the outside world and opens its own short transactions; it runs
    # outside the executor's transaction, so no row lock is held during the call (see executor).
    atomic: bool = True
    # Opened once around a worker's batch of this handler's deliveries (`batches`), for what the
    # calls can share: the e-mails' one SMTP connection. Each delivery keeps its own outcome.
    batch_scope: BatchScope | None = None

    def __post_init__(self) -> None:
        if not self.atomic and self.mode is not Mode.CELERY:
            raise ValueError(f"{self.name!r}: only celery-mode handlers may run outside a transaction")
        if self.batch_scope is not None and self.atomic:
            raise ValueError(f"{self.name!r}: a batch scope is for handlers that run outside a transaction")

    def matches(self, event_cls: type[DomainEvent]) -> bool:
        return issubclass(event_cls, self.event_types)

    @property
    def celery_queue(self) -> str:
        return self.queue or DEFAULT_QUEUE


@dataclass(frozen=True)
class Tracker:
    """A position reader: `handler(events, context)` gets batches of matching events in order."""

    name: str
    handler: BatchHandler
    event_types: tuple[type[DomainEvent], ...]
    batch_size: int = 500
    start: Literal["beginning", "now"] = "beginning"
    retry_schedule: tuple[int, ...] | None = None  # seconds between tries of a failing batch; None: the handlers'

    def matches(self, event_cls: type[DomainEvent]) -> bool:
        return issubclass(event_cls, self.event_types)


def type_names(subscriber: Subscription | Tracker) -> list[str]:
    """The stored `type` strings of every registered event class `subscriber` receives."""
    from domain_events.registry import registry

    return sorted(name for name, cls in registry.types().items() if subscriber.matches(cls))


class Subscriptions:
    def __init__(self) -> None:
        self._by_name: dict[str, Subscription] = {}
        self._trackers: dict[str, Tracker] = {}
        self._cache: dict[type[DomainEvent], tuple[Subscription, ...]] = {}

    def add(self, subscription: Subscription) -> Subscription:
        existing = self._by_name.get(subscription.name)
        if existing is not None:
            if existing.handler is not subscription.handler or existing.mode is not subscription.mode:
                raise ValueError(f"handler name {subscription.name!r} is already subscribed to another handler or mode")
            types = existing.event_types + tuple(t for t in subscription.event_types if t not in existing.event_types)
            subscription = replace(subscription, event_types=types)
        if subscription.name in self._trackers:
            raise ValueError(f"{subscription.name!r} is already a position reader")
        self._by_name[subscription.name] = subscription
        self._cache.clear()
        return subscription

    def add_tracker(self, tracker: Tracker) -> Tracker:
        existing = self._trackers.get(tracker.name)
        if (existing is not None and existing.handler is not tracker.handler) or tracker.name in self._by_name:
            raise ValueError(f"{tracker.name!r} is already subscribed")
        self._trackers[tracker.name] = tracker
        return tracker

    def remove_tracker(self, name: str) -> Tracker | None:
        """Take a position reader out (tests that subscribe one for a while)."""
        return self._trackers.pop(name, None)

    def remove(self, *names: str) -> list[Subscription]:
        """Take handlers out (tests that play older code); returns what was removed."""
        removed = [self._by_name.pop(n) for n in names if n in self._by_name]
        self._cache.clear()
        return removed

    def get(self, name: str) -> Subscription | None:
        return self._by_name.get(name)

    def tracker(self, name: str) -> Tracker | None:
        return self._trackers.get(name)

    def all(self) -> tuple[Subscription, ...]:
        return tuple(self._by_name.values())

    def trackers(self) -> tuple[Tracker, ...]:
        return tuple(self._trackers.values())

    def for_event(self, event_cls: type[DomainEvent]) -> tuple[Subscription, ...]:
        found = self._cache.get(event_cls)
        if found is None:
            found = tuple(s for s in self._by_name.values() if s.matches(event_cls))
            self._cache[event_cls] = found
        return found

    def names(self, *modes: Mode) -> list[str]:
        return [s.name for s in self._by_name.values() if s.mode in modes]


subscriptions = Subscriptions()
