"""Stored events and their deliveries partitioned by month (PostgreSQL; SQLite keeps plain tables).

Each table is copied, in this migration's transaction and under its write lock, into a table
partitioned by RANGE of the month: stored events by `recorded_at`, deliveries by their event's
(`event_recorded_at`, new, filled from the event), with a partition per month from the oldest
event's to two months ahead and a DEFAULT one. Ids, positions and their sequences are kept (the
next event draws the next id and position), and so are checkpoints, streams and the audit chain,
which live in other tables. Every index is built again on the new table, after the copy.

Keys: a partitioned table's primary key and unique constraints must hold its partition key.
- Primary keys: (id, recorded_at) and (id, event_recorded_at). Nothing has a foreign key to them.
- Deliveries' `delivery_once_per_handler`: (stored_event_id, handler, event_recorded_at), the
  same rows as before since an event has one month; `ON CONFLICT` names all three.
- Stored events' `event_id` and `position`: unique within each month, by an index on each
  partition (`domain_events.partitions` makes it with every new month); across months `position`
  is unique by its sequence and `event_id` by being a new UUID per event.
The model keeps `id` as its primary key and its unique fields: Django's state describes SQLite's
tables, and PostgreSQL's differ only as above.

The readers' fence (migration 0014) looks for the events table's ROW EXCLUSIVE lock: an INSERT
into the partitioned table takes it on that table (as well as on the partition it lands in), so the
fence still sees every transaction that may still commit a position. It is created again so that
no session keeps a plan made for the old table.

On a copy with 1,000,000 events and 2,000,000 deliveries this took about two minutes on a loaded
two-core machine (docs/capacity.md, Monthly partitions); the tables are locked for writes meanwhile.
"""

import importlib
from datetime import UTC, date, datetime

from django.db import migrations

import domain_events.models

EVENTS = "domain_events_storedevent"
DELIVERIES = "domain_events_delivery"
MONTHS_AHEAD = 2
UNIQUE_IN_MONTH = ("event_id", "position")
FENCE = importlib.import_module("domain_events.migrations.0014_fence_on_the_events_table_lock").POSTGRES_FORWARD


def _next(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _literal(month: date) -> str:
    return f"'{datetime(month.year, month.month, 1, tzinfo=UTC).isoformat()}'"


def _fetch(cursor, query: str, params=()) -> list[tuple]:
    cursor.execute(query, params)
    return cursor.fetchall()


def _columns(cursor, table: str) -> list[str]:
    return [
        row[0]
        for row in _fetch(
            cursor,
            "SELECT quote_ident(attname) FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum",
            [table],
        )
    ]


def _plain_indexes(cursor, table: str) -> list[str]:
    """The definitions of the table's indexes that are not unique (they are made again as they are)."""
    return [
        row[0].replace(" ON ONLY ", " ON ")
        for row in _fetch(
            cursor,
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = to_regclass(%s) AND NOT indisunique "
            "ORDER BY indexrelid",
            [table],
        )
    ]


def _months(cursor) -> list[date]:
    (oldest,) = _fetch(cursor, f"SELECT min(recorded_at) FROM {EVENTS}")[0]  # noqa: S608
    today = datetime.now(tz=UTC).date().replace(day=1)
    month = today if oldest is None else min(today, oldest.astimezone(UTC).date().replace(day=1))
    last = today
    for _ in range(MONTHS_AHEAD):
        last = _next(last)
    months = []
    while month <= last:
        months.append(month)
        month = _next(month)
    return months


def _partition(cursor, table: str, key: str, months: list[date]) -> list[str]:
    """Make `table` (renamed `<table>_flat`) again, empty and partitioned by `key`; returns its
    partitions' names."""
    cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_flat")
    cursor.execute(
        f"CREATE TABLE {table} (LIKE {table}_flat INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS) "
        f"PARTITION BY RANGE ({key})"
    )
    cursor.execute(f"ALTER TABLE {table} ALTER COLUMN {key} SET NOT NULL")
    names = []
    for month in months:
        name = f"{table}_{month:%Y_%m}"
        cursor.execute(
            f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM ({_literal(month)}) TO ({_literal(_next(month))})"
        )
        names.append(name)
    cursor.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
    return [*names, f"{table}_default"]


def _keep_sequence(cursor, table: str) -> None:
    """The new table's id sequence goes on from the old one's, and takes its name; the old table goes."""
    (old,) = _fetch(cursor, "SELECT pg_get_serial_sequence(%s, 'id')", [f"{table}_flat"])[0]
    (new,) = _fetch(cursor, "SELECT pg_get_serial_sequence(%s, 'id')", [table])[0]
    (last_value, is_called) = _fetch(cursor, f"SELECT last_value, is_called FROM {old}")[0]  # noqa: S608
    cursor.execute("SELECT setval(%s, %s, %s)", [new, last_value, is_called])
    cursor.execute(f"DROP TABLE {table}_flat")
    cursor.execute(f"ALTER SEQUENCE {new} RENAME TO {old.split('.')[-1]}")


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        schema_editor.execute(
            f"UPDATE {DELIVERIES} SET event_recorded_at = COALESCE("  # noqa: S608
            f"(SELECT e.recorded_at FROM {EVENTS} e WHERE e.id = {DELIVERIES}.stored_event_id), created_at)"
        )
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 0")
        # Every key and index is built after its table is copied: memory enough to sort one at a time.
        cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
        cursor.execute(f"LOCK TABLE {EVENTS}, {DELIVERIES} IN ACCESS EXCLUSIVE MODE")
        months = _months(cursor)
        event_indexes, delivery_indexes = _plain_indexes(cursor, EVENTS), _plain_indexes(cursor, DELIVERIES)

        event_partitions = _partition(cursor, EVENTS, "recorded_at", months)
        columns = ", ".join(_columns(cursor, EVENTS))
        cursor.execute(f"INSERT INTO {EVENTS} ({columns}) OVERRIDING SYSTEM VALUE SELECT {columns} FROM {EVENTS}_flat")  # noqa: S608
        _keep_sequence(cursor, EVENTS)
        cursor.execute(f"ALTER TABLE {EVENTS} ADD CONSTRAINT {EVENTS}_pkey PRIMARY KEY (id, recorded_at)")
        for name in event_partitions:
            for column in UNIQUE_IN_MONTH:
                cursor.execute(f"CREATE UNIQUE INDEX {name}_{column}_key ON {name} ({column})")
        for definition in event_indexes:
            cursor.execute(definition)

        _partition(cursor, DELIVERIES, "event_recorded_at", months)
        columns = [c for c in _columns(cursor, DELIVERIES) if c != "event_recorded_at"]
        cursor.execute(
            f"INSERT INTO {DELIVERIES} ({', '.join(columns)}, event_recorded_at) OVERRIDING SYSTEM VALUE "  # noqa: S608
            f"SELECT {', '.join('d.' + c for c in columns)}, COALESCE(e.recorded_at, d.created_at) "
            f"FROM {DELIVERIES}_flat d LEFT JOIN {EVENTS} e ON e.id = d.stored_event_id"
        )
        _keep_sequence(cursor, DELIVERIES)
        cursor.execute(f"ALTER TABLE {DELIVERIES} ADD CONSTRAINT {DELIVERIES}_pkey PRIMARY KEY (id, event_recorded_at)")
        cursor.execute(
            f"ALTER TABLE {DELIVERIES} ADD CONSTRAINT delivery_once_per_handler "
            "UNIQUE (stored_event_id, handler, event_recorded_at)"
        )
        for definition in delivery_indexes:
            cursor.execute(definition)

        cursor.execute(f"ANALYZE {EVENTS}")
        cursor.execute(f"ANALYZE {DELIVERIES}")
    schema_editor.execute(FENCE)


def _unpartition(cursor, table: str) -> None:
    cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_flat")
    cursor.execute(
        f"CREATE TABLE {table} (LIKE {table}_flat INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS)"
    )
    columns = ", ".join(_columns(cursor, table))
    cursor.execute(f"INSERT INTO {table} ({columns}) OVERRIDING SYSTEM VALUE SELECT {columns} FROM {table}_flat")  # noqa: S608
    _keep_sequence(cursor, table)
    cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY (id)")


def backward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 0")
        cursor.execute(f"LOCK TABLE {EVENTS}, {DELIVERIES} IN ACCESS EXCLUSIVE MODE")
        event_indexes, delivery_indexes = _plain_indexes(cursor, EVENTS), _plain_indexes(cursor, DELIVERIES)
        _unpartition(cursor, EVENTS)
        for column in UNIQUE_IN_MONTH:
            cursor.execute(f"ALTER TABLE {EVENTS} ADD CONSTRAINT {EVENTS}_{column}_key UNIQUE ({column})")
        for definition in event_indexes:
            cursor.execute(definition)
        _unpartition(cursor, DELIVERIES)
        cursor.execute(
            f"ALTER TABLE {DELIVERIES} ADD CONSTRAINT delivery_once_per_handler UNIQUE (stored_event_id, handler)"
        )
        for definition in delivery_indexes:
            cursor.execute(definition)
    schema_editor.execute(FENCE)


class Migration(migrations.Migration):
    dependencies = [("domain_events", "0016_archivedmonth")]

    operations = [
        # A constant default for the rows there are (no rewrite on PostgreSQL), dropped at once: the
        # copy below fills the column from the events.
        migrations.AddField(
            model_name="delivery",
            name="event_recorded_at",
            field=domain_events.models.EventRecordedAtField(default=datetime(1970, 1, 1, tzinfo=UTC), editable=False),
            preserve_default=False,
        ),
        migrations.RunPython(forward, backward),
    ]
