"""Database helpers every module may use."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Field, Model
from django.db.models.expressions import DatabaseDefault

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


# Rows of one written-out INSERT at most (PostgreSQL binds up to 65,535 values in one statement).
INSERT_CHUNK = 1000


@functools.lru_cache(maxsize=512)
def _insert(
    model: type[Model], rows: int, conflict: tuple[str, ...] | None
) -> tuple[str, tuple[Field, ...], tuple[Field, ...], bool]:
    """A written-out INSERT of `rows` rows of `model` (PostgreSQL), the fields it writes, those the
    database draws (an auto-increment key), which it returns in the rows' order, and whether it
    takes one array per column (`_columns`) rather than one value per field and row. `conflict`:
    None for none; the fields of the unique constraint a conflicting row is left alone on; () for
    any."""
    meta = model._meta
    quote = connection.ops.quote_name
    drawn = tuple(f for f in meta.concrete_fields if f.db_returning)
    fields = tuple(f for f in meta.concrete_fields if not f.db_returning and not getattr(f, "generated", False))
    columns = ", ".join(quote(f.column) for f in fields)
    by_column = rows > 1 and _unnestable(fields)
    if by_column:
        # One array per column (`_columns`): the text is the same whatever the number of rows, and
        # psycopg keeps its parse (it parses again a text longer than 4 KiB or with more than 50
        # values, as one VALUES row per row soon is). The types lose their length, as Django's
        # own bulk insert does, so an array never truncates a value.
        arrays = ", ".join(f"(%s)::{f.db_type(connection).split('(')[0]}[]" for f in fields)
        values = f"SELECT * FROM UNNEST({arrays})"  # noqa: S608 (the types are the model's)
    else:
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        values = "VALUES " + ", ".join([row] * rows)
    if conflict is None:
        on_conflict = ""
    else:
        target = ", ".join(quote(meta.get_field(name).column) for name in conflict)
        on_conflict = f" ON CONFLICT ({target}) DO NOTHING" if target else " ON CONFLICT DO NOTHING"
    # The drawn key, or else the row's own: with conflicts left out, which rows were written.
    returning = ", ".join(quote(f.column) for f in drawn) or quote(meta.pk.column)
    table = quote(meta.db_table)
    # Names from the model, every value bound.
    statement = f"INSERT INTO {table} ({columns}) {values}{on_conflict} RETURNING {returning}"
    return statement, fields, drawn, by_column


def _unnestable(fields: tuple[Field, ...]) -> bool:
    """Whether rows of `fields` can be sent as one array per column: plain types only, with one
    placeholder for every value (the conditions of Django's own bulk insert by `UNNEST`)."""
    return all(
        not hasattr(f, "get_placeholder")
        and (f.target_field if f.is_relation else f).get_internal_type() in connection.data_types
        and f.db_type(connection)
        for f in fields
    )


def _columns(values: list[Any], width: int) -> list[list[Any]]:
    """Row-major values as one list per column."""
    return [values[i::width] for i in range(width)]


def _values(rows: Sequence[Model], fields: tuple[Field, ...]) -> list[Any]:
    values = [f.pre_save(row, add=True) for row in rows for f in fields]
    if any(isinstance(v, DatabaseDefault) for v in values):
        # The written-out statement binds every value; a column left to its database default
        # needs the ORM's `DEFAULT`.
        raise ValueError("a value left to its database default cannot be bound: use the ORM")
    return [f.get_db_prep_save(v, connection) for v, f in zip(values, fields * len(rows), strict=True)]


def _saved(row: Model, field_values: Sequence[Any], drawn: tuple[Field, ...]) -> None:
    for field, value in zip(drawn, field_values, strict=False):
        setattr(row, field.attname, value)
    row._state.adding = False
    row._state.db = connection.alias


def insert_rows(rows: Sequence[M], *, ignore_conflicts: bool = False) -> list[M]:
    """`bulk_create` for the hot paths: one written-out INSERT per `INSERT_CHUNK` rows on PostgreSQL,
    its text kept per model (and row count, where a column's type cannot travel as an array), so
    nothing is compiled again for every call. A drawn key
    (an auto-increment id) is set on each row, as `bulk_create` does. With `ignore_conflicts`, a
    row that conflicts with one already there is not written and not returned (rows whose key is
    drawn by the database cannot be told apart: use `bulk_create` then). Elsewhere than on
    PostgreSQL, `bulk_create`, which returns every row."""
    if not rows:
        return []
    model = type(rows[0])
    if connection.vendor != "postgresql":
        return model.objects.bulk_create(rows, ignore_conflicts=ignore_conflicts)
    if ignore_conflicts and any(f.db_returning for f in model._meta.concrete_fields):
        raise ValueError(f"{model.__name__}: a drawn key cannot be matched to its row when conflicts are left out")
    written: list[M] = []
    for start in range(0, len(rows), INSERT_CHUNK):
        chunk = rows[start : start + INSERT_CHUNK]
        statement, fields, drawn, by_column = _insert(model, len(chunk), () if ignore_conflicts else None)
        values = _values(chunk, fields)
        if by_column:
            values = _columns(values, len(fields))
        with connection.cursor() as cursor:
            cursor.execute(statement, values)
            returned = cursor.fetchall()
        if ignore_conflicts:
            keys = {key for (key,) in returned}
            chunk = [row for row in chunk if row.pk in keys]
            returned = [()] * len(chunk)
        for row, field_values in zip(chunk, returned, strict=True):
            _saved(row, field_values, drawn)
        written += chunk
    return written


def get_or_insert(model: type[M], *, defaults: dict[str, Any], **lookup: Any) -> tuple[M, bool]:
    """`get_or_create` for a row keyed by a unique constraint on exactly the `lookup` fields, in one
    statement when the row is new (the common case: a handler's first delivery): an insert that
    does nothing on a conflict, then a read only if the row was there. A conflict is no error, so
    no savepoint is needed around the insert. Elsewhere than on PostgreSQL, `get_or_create`."""
    if connection.vendor != "postgresql":
        return model.objects.get_or_create(defaults=defaults, **lookup)
    row = model(**lookup, **defaults)
    statement, fields, drawn, _ = _insert(model, 1, tuple(lookup))
    with connection.cursor() as cursor:
        cursor.execute(statement, _values([row], fields))
        inserted = cursor.fetchone()
    if inserted is None:
        return model.objects.get(**lookup), False
    _saved(row, inserted, drawn)
    return row, True
