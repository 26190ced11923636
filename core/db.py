"""Database helpers every module may use."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Field, Model

M = TypeVar("M", bound=Model)


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


@functools.cache
def _insert_unless_present(
    model: type[Model], conflict: tuple[str, ...]
) -> tuple[str, tuple[Field, ...], tuple[Field, ...]]:
    """The statement of `get_or_insert` for `model` (PostgreSQL), the fields it writes and those
    the database draws (an auto-increment key), which it returns."""
    meta = model._meta
    quote = connection.ops.quote_name
    drawn = tuple(f for f in meta.concrete_fields if f.db_returning)
    fields = tuple(f for f in meta.concrete_fields if not f.db_returning and not getattr(f, "generated", False))
    columns = ", ".join(quote(f.column) for f in fields)
    target = ", ".join(quote(meta.get_field(name).column) for name in conflict)
    values = ", ".join(["%s"] * len(fields))
    returning = ", ".join(quote(f.column) for f in drawn) or "1"
    table = quote(meta.db_table)
    # Names from the model, every value bound.
    statement = (
        f"INSERT INTO {table} ({columns}) VALUES ({values}) ON CONFLICT ({target}) DO NOTHING RETURNING {returning}"  # noqa: S608
    )
    return statement, fields, drawn


def get_or_insert(model: type[M], *, defaults: dict[str, Any], **lookup: Any) -> tuple[M, bool]:
    """`get_or_create` for a row keyed by a unique constraint on exactly the `lookup` fields, in one
    statement when the row is new (the common case: a handler's first delivery): an insert that
    does nothing on a conflict, then a read only if the row was there. A conflict is no error, so
    no savepoint is needed around the insert. Elsewhere than on PostgreSQL, `get_or_create`."""
    if connection.vendor != "postgresql":
        return model.objects.get_or_create(defaults=defaults, **lookup)
    row = model(**lookup, **defaults)
    statement, fields, drawn = _insert_unless_present(model, tuple(lookup))
    params = [f.get_db_prep_save(f.pre_save(row, add=True), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        inserted = cursor.fetchone()
    if inserted is None:
        return model.objects.get(**lookup), False
    for field, value in zip(drawn, inserted, strict=False):
        setattr(row, field.attname, value)
    row._state.adding = False
    row._state.db = connection.alias
    return row, True
