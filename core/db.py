"""Database helpers every module may use."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection


@contextmanager
def long_statements_allowed() -> Iterator[None]:
    """Lift the connection's `statement_timeout` for the block (maintenance commands whose replays
    or comparisons may run long), then put back the configured one. Idle transactions stay bounded."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET statement_timeout")
