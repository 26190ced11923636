"""Monthly partitions of the stored events and their deliveries (PostgreSQL).

Stored events are partitioned by the month of their `recorded_at`, deliveries by the month of their
event's (`Delivery.event_recorded_at`, copied from the event as the delivery is written): an
event's deliveries, a late subscriber's included, share its month, so a month goes in one piece.
Months are UTC. Partitions are named `<table>_YYYY_MM`, and each table has a DEFAULT partition
(`<table>_default`), so an insert never fails for want of its month.

- The relays' housekeeping (`retention.prune`, one relay at a time) calls `partitions_ensure`: it
  creates the current month, and the next one once the current has less than `NEXT_MONTH_LEAD`
  left, and moves any month found in DEFAULT into a partition of its own. No month is made
  earlier than that: every statement that does not name its month (a delivery's blockers, a
  relay's due rows) is planned over each partition, an empty one too.
- Retention truncates a month of deliveries once it is fully past (`month_truncate`, keeping the
  rows that must stay); `archive_events` detaches and drops the months it archived (`drop_month`).

Keys (migration 0017): primary keys are (id, partition key); a delivery's one row per (event,
handler) is unique on (stored_event_id, handler, event_recorded_at), the same as before since an
event has one month. `event_id` and `position` are unique within each month (a unique index on
each partition of the events, made here with the partition); across months `position` is unique
by its sequence and `event_id` by being a new UUID per event.

On SQLite the tables stay plain: nothing is partitioned and these functions do nothing.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db import OperationalError, connection, transaction
from django.utils import timezone

from domain_events.models import Delivery, StoredEvent

logger = logging.getLogger(__name__)

EVENTS = StoredEvent._meta.db_table
DELIVERIES = Delivery._meta.db_table
# Each partitioned table and the column its months are taken from.
KEYS = {EVENTS: "recorded_at", DELIVERIES: "event_recorded_at"}
# Unique within each month: an index of each partition (see above).
UNIQUE_IN_MONTH = {EVENTS: ("event_id", "position"), DELIVERIES: ()}
# How long before its first day the next month's partitions are made (the housekeeping runs once a
# minute, so a week leaves room for relays stopped for days; a month it missed lands in DEFAULT).
NEXT_MONTH_LEAD = timedelta(days=7)
# How long partition work waits for a table lock before it gives up (and is tried again later),
# rather than queue the writers behind it.
LOCK_TIMEOUT = "5s"
_MONTH_SUFFIX = re.compile(r"_(\d{4})_(\d{2})$")


@dataclass(frozen=True)
class MonthPartition:
    """One partition: its table's name, its own, its month (None for DEFAULT), and the rows the
    planner's statistics estimate it holds (-1 before it was ever analysed)."""

    table: str
    name: str
    month: date | None
    estimated_rows: int


def month_of(moment: datetime) -> date:
    """The (UTC) month of `moment`, as its first day."""
    moment = moment.astimezone(UTC)
    return date(moment.year, moment.month, 1)


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def month_bounds(month: date) -> tuple[datetime, datetime]:
    """The month's first instant and the next month's (UTC)."""
    following = next_month(month)
    return datetime(month.year, month.month, 1, tzinfo=UTC), datetime(following.year, following.month, 1, tzinfo=UTC)


def partition_name(table: str, month: date) -> str:
    return f"{table}_{month:%Y_%m}"


def default_name(table: str) -> str:
    return f"{table}_default"


def partitioned(table: str = EVENTS) -> bool:
    """Whether `table` is partitioned here (never on SQLite)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass(%s)", [table])
        row = cursor.fetchone()
    return bool(row and row[0])


def month_partitions(table: str = EVENTS) -> list[MonthPartition]:
    """The partitions of `table`, oldest month first, DEFAULT last (none when not partitioned)."""
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            """
SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT', c.reltuples::bigint
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = to_regclass(%s)""",
            [table],
        )
        rows = cursor.fetchall()
    found = []
    for name, is_default, estimate in rows:
        suffix = _MONTH_SUFFIX.search(name)
        month = None if is_default or suffix is None else date(int(suffix[1]), int(suffix[2]), 1)
        found.append(MonthPartition(table, name, month, estimate))
    return sorted(found, key=lambda p: (p.month is None, p.month or date.min))


def _quoted(moment: datetime) -> str:
    # A literal, not a parameter: partition bounds are DDL. Built from a datetime, never from input.
    return f"'{moment.isoformat()}'"


def _exists(name: str) -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        return cursor.fetchone()[0]


def _wait_at_most(cursor) -> None:
    cursor.execute("SELECT set_config('lock_timeout', %s, true)", [LOCK_TIMEOUT])


def _columns(cursor, table: str) -> str:
    cursor.execute(
        "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute "
        "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
        [table],
    )
    return cursor.fetchone()[0]


def month_partition_create(*, table: str, month: date) -> bool:
    """Give `month` of `table` its own partition, moving its rows out of DEFAULT; False if it has one.

    The partition is built beside the table and attached (which locks the table only against
    schema changes, not against writers); DEFAULT is locked while its rows of the month move, so
    none can be inserted there meanwhile.
    """
    name = partition_name(table, month)
    if connection.vendor != "postgresql" or _exists(name):
        return False
    start, end = month_bounds(month)
    key = KEYS[table]
    with transaction.atomic(), connection.cursor() as cursor:
        _wait_at_most(cursor)
        # The relays' housekeeping and `archive_events` may both make a month: one at a time.
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [name])
        if _exists(name):
            return False
        cursor.execute(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        default = default_name(table)
        moved = 0
        if _exists(default):
            cursor.execute(f"LOCK TABLE {default} IN ACCESS EXCLUSIVE MODE")
            columns = _columns(cursor, table)
            cursor.execute(
                f"WITH moved AS (DELETE FROM {default} WHERE {key} >= %s AND {key} < %s RETURNING {columns}) "  # noqa: S608
                f"INSERT INTO {name} ({columns}) SELECT {columns} FROM moved",
                [start, end],
            )
            moved = cursor.rowcount
        for column in UNIQUE_IN_MONTH[table]:
            cursor.execute(f"CREATE UNIQUE INDEX {name}_{column}_key ON {name} ({column})")
        cursor.execute(
            f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ({_quoted(start)}) TO ({_quoted(end)})"
        )
    logger.info("partition %s created%s", name, f", {moved} rows moved out of {default}" if moved else "")
    return True


def months_in_default(table: str) -> list[date]:
    """The months that have rows in `table`'s DEFAULT partition (normally none)."""
    default = default_name(table)
    if not _exists(default):
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT date_trunc('month', {KEYS[table]} AT TIME ZONE 'UTC')::date FROM {default} ORDER BY 1"  # noqa: S608
        )
        return [row[0] for row in cursor.fetchall()]


def months_wanted(now: datetime) -> list[date]:
    """The months that must have their partitions at `now`: the current one, and the next once it
    begins within `NEXT_MONTH_LEAD`."""
    month = month_of(now)
    following = next_month(month)
    starts, _ = month_bounds(following)
    return [month, following] if starts - now <= NEXT_MONTH_LEAD else [month]


def partitions_ensure(*, now: datetime | None = None) -> list[str]:
    """Housekeeping: the months wanted now (`months_wanted`) get their partitions, and months found
    in DEFAULT get theirs, for both tables; returns the partitions created. A month whose locks
    are not granted within `LOCK_TIMEOUT` is left for the next round."""
    if not partitioned(EVENTS):
        return []
    wanted = months_wanted(now or timezone.now())
    created = []
    for table in KEYS:
        for each in sorted({*months_in_default(table), *wanted}):
            try:
                if month_partition_create(table=table, month=each):
                    created.append(partition_name(table, each))
            except OperationalError as exc:
                logger.warning("partition %s not created this round: %s", partition_name(table, each), exc)
    return created


def month_partition_detach(*, table: str, month: date) -> str | None:
    """Detach `month`'s partition of `table` (its rows leave the table at commit) and return its
    name, or None if the month has no partition. Waits at most `LOCK_TIMEOUT` for the table."""
    name = partition_name(table, month)
    if not _exists(name):
        return None
    with connection.cursor() as cursor:
        _wait_at_most(cursor)
        cursor.execute(f"ALTER TABLE {table} DETACH PARTITION {name}")
    return name


def drop_month(*, table: str, month: date) -> int | None:
    """Detach and drop `month`'s partition of `table`, with every row in it; returns how many rows
    it held, or None if the month has no partition. The caller decides what may go (`archive`
    checks its file first)."""
    with transaction.atomic():
        name = month_partition_detach(table=table, month=month)
        if name is None:
            return None
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {name}")  # noqa: S608
            rows = cursor.fetchone()[0]
            cursor.execute(f"DROP TABLE {name}")
    logger.info("partition %s dropped with its %d rows", name, rows)
    return rows


def month_truncate(*, table: str, month: date, keep: str = "false", params: list | tuple = ()) -> int:
    """Empty `month`'s partition of `table` at once, except the rows matching the SQL condition
    `keep` (with `params`), which are set aside and put back with their ids; returns how many
    rows went (0, untouched, when every row is to be kept or the month has no partition).

    The partition is locked for the moment it takes (at most `LOCK_TIMEOUT` to get the lock), so
    nothing changes a row to keep meanwhile.
    """
    name = partition_name(table, month)
    if not _exists(name):
        return 0
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {name} WHERE NOT ({keep}))", params)  # noqa: S608
        if not cursor.fetchone()[0]:
            return 0
    with transaction.atomic(), connection.cursor() as cursor:
        _wait_at_most(cursor)
        cursor.execute(f"LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE")
        cursor.execute(f"SELECT count(*) FROM {name}")  # noqa: S608
        held = cursor.fetchone()[0]
        cursor.execute(f"CREATE TEMPORARY TABLE kept_rows ON COMMIT DROP AS SELECT * FROM {name} WHERE {keep}", params)  # noqa: S608
        kept = cursor.rowcount
        cursor.execute(f"TRUNCATE {name}")
        if kept:
            cursor.execute(f"INSERT INTO {name} SELECT * FROM kept_rows")  # noqa: S608
        cursor.execute("DROP TABLE kept_rows")
    logger.info("partition %s truncated: %d rows gone, %d kept", name, held - kept, kept)
    return held - kept


def table_bytes(table: str) -> int:
    """The bytes `table` takes with its indexes and TOAST, over all its partitions
    (`pg_total_relation_size` of a partitioned table is 0: its rows are in its partitions); a
    plain table's own (it has no partition tree)."""
    if connection.vendor != "postgresql":
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE((SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree(to_regclass(%s))),"
            " pg_total_relation_size(to_regclass(%s)), 0)::bigint",
            [table, table],
        )
        return cursor.fetchone()[0]
