"""Correlation and causation, carried through a request or a handler run by context variables.

A request's `X-Request-ID` (or a new id) becomes the correlation id of every event it publishes;
a handler runs with the handled event's correlation id and its event id as the causation id, so
what it publishes traces back to where it came from.

The same ids go on log lines through `core.log_context.log_scope`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from uuid import UUID

_VALID_CORRELATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}$")


@dataclass(frozen=True)
class Trace:
    correlation_id: str
    causation_id: UUID | None = None


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
def traced(correlation_id: str, causation_id: UUID | None = None) -> Iterator[Trace]:
    trace = Trace(correlation_id=correlation_id, causation_id=causation_id)
    token = _current.set(trace)
    try:
        yield trace
    finally:
        _current.reset(token)
