"""The log context: what every log line logged inside a scope carries (correlation id, event,
tenant, handler), in any process. `config/logs.py` adds it to each line.

One context variable holds the whole mapping, so a scope costs one `set` and one `reset`: it is
entered for every handler run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

_EMPTY: Mapping[str, str] = MappingProxyType({})
_context: ContextVar[Mapping[str, str]] = ContextVar("shelfwise_log_context", default=_EMPTY)


def _text(values: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in values.items() if v is not None}


@contextmanager
def log_scope(**values: Any) -> Iterator[None]:
    """Put `values` (those not None, as text) on every log line of the block. Whatever is bound
    inside the block (a tenant found on the way) is gone at its end, so nothing leaks to the next
    request or handler run."""
    token = _context.set(MappingProxyType({**_context.get(), **_text(values)}))
    try:
        yield
    finally:
        _context.reset(token)


def bind_log_context(**values: Any) -> None:
    """Add `values` to the log lines of the rest of the current scope."""
    _context.set(MappingProxyType({**_context.get(), **_text(values)}))


def clear_log_context() -> None:
    """Start afresh (a worker process between two tasks)."""
    _context.set(_EMPTY)


def add_log_context(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """A structlog processor: the current log context onto the line (what the line says itself wins)."""
    context = _context.get()
    if context:
        for key, value in context.items():
            event_dict.setdefault(key, value)
    return event_dict
