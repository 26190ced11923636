"""Correlation and causation, carried through a request or a handler run by context variables.

A request's `X-Request-ID` (or a new id) becomes the correlation id of every event it publishes;
a handler runs with the handled event's correlation id and its event id as the causation id, so
what it publishes traces back to where it came from. The actor (`domain_events.actors`) travels the
same way: a request's is its authenticated user, a handler's the handled event's.

The same ids go on log lines through `core.log_context.log_scope`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from uuid import UUID

from domain_events.actors import SYSTEM

_VALID_CORRELATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}$")


@dataclass(frozen=True)
class Trace:
    correlation_id: str
    causation_id: UUID | None = None
    # Who causes what is published in the block: an actor, or (a request, whose user is known only
    # once a view has authenticated it) a function that reads it when an event is published.
    actor_source: str | Callable[[], str] = SYSTEM

    @property
    def actor(self) -> str:
        source = self.actor_source
        return source() if callable(source) else source


_current: ContextVar[Trace | None] = ContextVar("shelfwise_trace", default=None)


def new_correlation_id() -> str:
    return str(uuid.uuid4())


def clean_correlation_id(candidate: str | None) -> str:
    """The caller's id if it is a sane token (≤128 printable characters), else a new one."""
    if candidate and _VALID_CORRELATION_ID.match(candidate):
        return candidate
    return new_correlation_id()


def current_trace() -> Trace | None:
    return _current.get()


@contextmanager
def traced(
    correlation_id: str, causation_id: UUID | None = None, *, actor: str | Callable[[], str] = SYSTEM
) -> Iterator[Trace]:
    trace = Trace(correlation_id=correlation_id, causation_id=causation_id, actor_source=actor)
    token = _current.set(trace)
    try:
        yield trace
    finally:
        _current.reset(token)


@contextmanager
def acting_as(actor: str) -> Iterator[Trace]:
    """Publish as `actor` in the block (a management command run `--by` someone), keeping the
    current correlation and causation, if any."""
    current = _current.get()
    trace = replace(current, actor_source=actor) if current else Trace(correlation_id="", actor_source=actor)
    token = _current.set(trace)
    try:
        yield trace
    finally:
        _current.reset(token)
