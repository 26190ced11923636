"""Read-model rows as plain dicts: what a projection batch reads and writes back.

A batch reads the rows it touches in one query per table and writes back every table it changed
in one statement (`rows_save`): rows with absolute values, counters with deltas. Rows are dicts of
field name to value (no generation, no id): a rebuild changes millions of them, and model instances
would cost it more than the database work.

On PostgreSQL the keys to read and the rows to write each travel as one JSON parameter, unpacked by
`jsonb_to_recordset` into the columns' own types: the statements are the same text every time,
however many rows, and nothing is quoted value by value. A table's rows are written by an `INSERT
… ON CONFLICT (key) DO UPDATE`, its counters by an `UPDATE` and an `INSERT` of the keys it did not
find, each a common table expression of the one statement. Elsewhere (SQLite, the zero-setup
default) the ORM reads and writes the same rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from django.db import connection, models
from pydantic_core import to_json

Row = dict[str, Any]


@cache
def key_fields(model: type[models.Model]) -> tuple[str, ...]:
    """The fields that name a row within its generation (the model's `…_key` constraint)."""
    [key] = [c for c in model._meta.constraints if c.name.endswith("_key")]
    return tuple(f for f in key.fields if f != "generation")


@cache
def row_fields(model: type[models.Model]) -> tuple[models.Field, ...]:
    """The fields a row holds: every column but the id and the generation."""
    return tuple(f for f in model._meta.concrete_fields if not f.primary_key and f.name != "generation")


def row_new(model: type[models.Model], key: tuple) -> Row:
    """A row not stored yet: its key, and every other field's default."""
    names = key_fields(model)
    row = {f.name: f.get_default() for f in row_fields(model) if f.name not in names}
    row.update(zip(names, key, strict=True))
    return row


def rows_get(model: type[models.Model], *, generation: int, keys: Iterable[tuple]) -> dict[tuple, Row]:
    """The stored rows of `model` in `generation` with these keys; a key without a row is left out."""
    keys = set(keys)
    if not keys:
        return {}
    names = key_fields(model)
    fields = row_fields(model)
    if connection.vendor != "postgresql":
        # A superset (every combination of the keys' parts), narrowed below.
        lookups = {f"{name}__in": {key[i] for key in keys} for i, name in enumerate(names)}
        rows = model.objects.filter(generation=generation, **lookups).values(*(f.name for f in fields))
        stored = {tuple(row[name] for name in names): row for row in rows}
        return {key: row for key, row in stored.items() if key in keys}
    wanted = _json([dict(zip(names, key, strict=True)) for key in keys])
    with connection.cursor() as cursor:
        cursor.execute(_select_sql(model), [wanted, generation])
        found = cursor.fetchall()
    # What the ORM would do to these columns (JSON text to Python, for one).
    converters = [(i, f, c) for i, f in enumerate(fields) for c in f.get_db_converters(connection)]
    columns = [f.name for f in fields]
    at = [columns.index(name) for name in names]
    stored = {}
    for values in found:
        if converters:
            values = list(values)
            for i, field, convert in converters:
                values[i] = convert(values[i], field.cached_col, connection)
        stored[tuple(values[i] for i in at)] = dict(zip(columns, values, strict=True))
    return stored


def rows_write(model: type[models.Model], *, generation: int, rows: list[Row]) -> None:
    """Insert or replace `rows` of `model` in `generation`, in one statement."""
    if not rows:
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_upsert_sql(model), [generation, _json(rows)])
        return
    keys = key_fields(model)
    model.objects.bulk_create(
        [model(generation=generation, **row) for row in rows],
        update_conflicts=True,
        unique_fields=("generation", *keys),
        update_fields=[f.name for f in row_fields(model) if f.name not in keys],
    )


def rows_add(
    model: type[models.Model],
    *,
    generation: int,
    deltas: dict[tuple, dict[str, Any]],
    counters: tuple[str, ...] | None = None,
) -> None:
    """Add `deltas` (per key, per field) to the `counters` of `model` in `generation` (by default
    every field but the key), in one statement.

    A key without a row gets one, its other fields at their defaults. A field of a key's deltas that
    is not a counter is set to the value given (every key must give it). No row is read: on
    PostgreSQL the rows that exist are updated and the others inserted by the same statement (an
    upsert could not carry a negative delta: the columns' CHECK constraints see the row it proposes
    to insert).
    """
    if not deltas:
        return
    if connection.vendor != "postgresql":
        counted = _counters(model, counters)
        stored = rows_get(model, generation=generation, keys=deltas)
        rows = []
        for key, changes in deltas.items():
            row = stored.get(key) or row_new(model, key)
            for name, value in changes.items():
                row[name] = row[name] + value if name in counted else value
            rows.append(row)
        rows_write(model, generation=generation, rows=rows)
        return
    rows_save(generation=generation, adds=[(model, deltas, counters)])


def rows_save(
    *,
    generation: int,
    writes: Iterable[tuple[type[models.Model], list[Row]]] = (),
    adds: Iterable[tuple[type[models.Model], dict[tuple, dict[str, Any]], tuple[str, ...] | None]] = (),
) -> None:
    """`rows_write` and `rows_add` (model, deltas, counters) of several models at once: on PostgreSQL
    in one statement."""
    writes = [(model, rows) for model, rows in writes if rows]
    adds = [(model, deltas, counters) for model, deltas, counters in adds if deltas]
    if not writes and not adds:
        return
    if connection.vendor != "postgresql":
        for model, rows in writes:
            rows_write(model, generation=generation, rows=rows)
        for model, deltas, counters in adds:
            rows_add(model, generation=generation, deltas=deltas, counters=counters)
        return
    params: list[Any] = []
    parts: list[tuple] = []
    for _, rows in writes:
        params += [generation, _json(rows)]
    for model, deltas, counters in adds:
        counted = _counters(model, counters)
        assigned = tuple(sorted({name for changes in deltas.values() for name in changes} - set(counted)))
        params += [_json(_added(model, deltas, counted)), generation, generation]
        parts.append((model, counted, assigned))
    with connection.cursor() as cursor:
        cursor.execute(_save_sql(tuple(m for m, _ in writes), tuple(parts)), params)


def _counters(model: type[models.Model], counters: tuple[str, ...] | None) -> tuple[str, ...]:
    if counters is not None:
        return counters
    names = key_fields(model)
    return tuple(f.name for f in row_fields(model) if f.name not in names)


def _added(model: type[models.Model], deltas: dict[tuple, dict[str, Any]], counters: tuple[str, ...]) -> list[Row]:
    """Each key's whole row: its deltas (0 for a counter not given), the values it sets, and the
    defaults of the other fields (what a new row starts with)."""
    rows = []
    for key, changes in deltas.items():
        row = row_new(model, key)
        row.update(dict.fromkeys(counters, 0))
        row.update(changes)
        rows.append(row)
    return rows


def _json(values: list[Row]) -> str:
    """JSON text of rows. UUIDs, decimals, dates and times become strings, which PostgreSQL reads
    back by the types of the record; pydantic-core writes them several times faster than
    `json.dumps` with a `default`."""
    return to_json(values).decode()


def _record(fields: Iterable[models.Field]) -> str:
    """The column definitions of `jsonb_to_recordset`: each field by name, in its column's type."""
    return ", ".join(f"{connection.ops.quote_name(f.name)} {f.db_type(connection)}" for f in fields)


@cache
def _select_sql(model: type[models.Model]) -> str:
    qn = connection.ops.quote_name
    keys = [model._meta.get_field(name) for name in key_fields(model)]
    columns = ", ".join(qn(f.column) for f in row_fields(model))
    outer = ", ".join(f"t.{qn(f.column)}" for f in row_fields(model))
    match = " AND ".join(f"t.{qn(f.column)} = k.{qn(f.name)}" for f in keys)
    # A probe of the key's index for each key (LATERAL … LIMIT 1 keeps it one): joined as a whole,
    # the planner, which takes the keys for a hundred rows, may read the generation's every row.
    return (
        f"SELECT {outer} FROM jsonb_to_recordset(%s::jsonb) AS k({_record(keys)}) "  # noqa: S608 (names from the model)
        f"CROSS JOIN LATERAL (SELECT {columns} FROM {qn(model._meta.db_table)} t "
        f"WHERE t.generation = %s AND {match} LIMIT 1) t"
    )


@cache
def _upsert_sql(model: type[models.Model]) -> str:
    qn = connection.ops.quote_name
    fields = row_fields(model)
    keys = ("generation", *key_fields(model))
    key_columns = ", ".join(qn(model._meta.get_field(name).column) for name in keys)
    columns = ", ".join(qn(f.column) for f in fields)
    values = ", ".join(f"r.{qn(f.name)}" for f in fields)
    updates = ", ".join(f"{qn(f.column)} = EXCLUDED.{qn(f.column)}" for f in fields if f.name not in keys)
    return (
        f"INSERT INTO {qn(model._meta.db_table)} (generation, {columns}) "  # noqa: S608 (names from the model)
        f"SELECT %s, {values} FROM jsonb_to_recordset(%s::jsonb) AS r({_record(fields)}) "
        f"ON CONFLICT ({key_columns}) DO UPDATE SET {updates}"
    )


@cache
def _add_ctes(model: type[models.Model], n: int, counters: tuple[str, ...], assigned: tuple[str, ...]) -> str:
    """The common table expressions that add a JSON parameter's rows of deltas to `model`'s
    `counters` and set its `assigned` fields, inserting the rows of keys it has not (parameters:
    the rows, the generation twice), named with the suffix `n`."""
    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    names = key_fields(model)
    keys = [model._meta.get_field(name) for name in names]
    fields = row_fields(model)
    columns = ", ".join(qn(f.column) for f in fields)
    values = ", ".join(f"d.{qn(f.name)}" for f in fields)
    match = " AND ".join(f"t.{qn(f.column)} = d.{qn(f.name)}" for f in keys)
    changed = [model._meta.get_field(name) for name in (*counters, *assigned)]
    updates = ", ".join(
        f"{qn(f.column)} = t.{qn(f.column)} + d.{qn(f.name)}"
        if f.name in counters
        else f"{qn(f.column)} = d.{qn(f.name)}"
        for f in changed
    )
    returned = ", ".join(f"t.{qn(f.column)} AS {qn(f.name)}" for f in keys)
    updated = " AND ".join(f"u.{qn(f.name)} = d.{qn(f.name)}" for f in keys)
    return (
        f"d{n} AS (SELECT * FROM jsonb_to_recordset(%s::jsonb) AS d({_record(fields)})), "  # noqa: S608 (names from the model)
        f"u{n} AS (UPDATE {table} t SET {updates} FROM d{n} d "
        f"WHERE t.generation = %s AND {match} RETURNING {returned}), "
        f"i{n} AS (INSERT INTO {table} (generation, {columns}) SELECT %s, {values} FROM d{n} d "
        f"WHERE NOT EXISTS (SELECT 1 FROM u{n} u WHERE {updated}))"
    )


@cache
def _save_sql(written: tuple[type[models.Model], ...], added: tuple[tuple, ...]) -> str:
    """One statement of `rows_save`: an upsert per written model, then the additions to each added
    one, given as (model, counters, assigned fields)."""
    parts = [f"w{n} AS ({_upsert_sql(model)})" for n, model in enumerate(written)]
    parts += [_add_ctes(model, n, counters, assigned) for n, (model, counters, assigned) in enumerate(added)]
    return f"WITH {', '.join(parts)} SELECT 1"
