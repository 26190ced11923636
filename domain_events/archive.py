"""Archiving old months of stored events to files, and reading them back.

A month is the events whose `recorded_at` falls in it (UTC). Its file, `events-YYYY-MM.ndjson.gz`,
is gzip-compressed NDJSON and describes itself: the first line is a header (format and version,
the month, the columns, how many events, their first and last positions, the sha256 of the event
lines and of their event ids, and each tenant's audit chain head once the month was in it); every
other line is one event, in position order, keyed by column. Any tool that reads gzip and JSON
reads it.

`month_archive` writes the file, reads it back and compares it with the table (count, checksum of
the lines, checksum of the event ids as the database lists them) before it removes anything; then,
in one transaction, it removes the month's events and their finished deliveries and records the
month (`ArchivedMonth`). Where the tables are partitioned by month (`domain_events.partitions`),
removing is detaching the month's two partitions, checking that the detached events are the
file's (their count, and none past its last position) and that no delivery in them is still
needed, then dropping them; elsewhere it is a DELETE. It refuses a month that anything still
needs: an open or dead delivery, a position reader that has not read it, a subscriber not yet
covered past it.
"""

from __future__ import annotations

import gzip
import hashlib
import heapq
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from uuid import UUID

from django.db import OperationalError, connection, models, transaction

from domain_events import partitions
from domain_events.bus import NoQueryHandler, event_bus
from domain_events.models import ArchivedMonth, Checkpoint, Delivery, ParkedEvent, StoredEvent, Subscriber
from domain_events.parking import READ
from domain_events.queries import AuditChainHeads
from domain_events.subscriptions import subscriptions

FORMAT = "shelfwise-stored-events"
FORMAT_VERSION = 1
BATCH = 5000
# Detaching a month waits for the tables' locks (at most `partitions.LOCK_TIMEOUT` each time): tries.
DETACH_TRIES = 5
COLUMNS = tuple(f.column for f in StoredEvent._meta.concrete_fields)
_UUIDS = {f.column for f in StoredEvent._meta.concrete_fields if isinstance(f, models.UUIDField)}
_TIMES = {f.column for f in StoredEvent._meta.concrete_fields if isinstance(f, models.DateTimeField)}


class ArchiveRefused(Exception):
    """A month cannot be archived (yet): the message says what still needs it."""


class ArchiveCorrupt(Exception):
    """An archive file does not read back as it was written, or a directory lacks an archived month."""


def month_start(value: str) -> date:
    """`YYYY-MM` as the month's first day; raises `ValueError` for anything else."""
    parsed = datetime.strptime(value, "%Y-%m").replace(tzinfo=UTC)
    return date(parsed.year, parsed.month, 1)


def _next(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _bounds(month: date) -> tuple[datetime, datetime]:
    return datetime(month.year, month.month, 1, tzinfo=UTC), datetime(*_next(month).timetuple()[:3], tzinfo=UTC)


def file_name(month: date) -> str:
    return f"events-{month:%Y-%m}.ndjson.gz"


def _encode(column: str, value: object) -> object:
    if value is None:
        return None
    if column in _UUIDS:
        return str(value)
    if column in _TIMES:
        return value.astimezone(UTC).isoformat()
    return value


def _decode(column: str, value: object) -> object:
    if value is None:
        return None
    if column in _UUIDS:
        return UUID(value)
    if column in _TIMES:
        return datetime.fromisoformat(value)
    return value


def _line(row: dict) -> bytes:
    return json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


@dataclass(frozen=True)
class Archived:
    month: date
    events: int
    path: Path


def _month_events(month: date) -> models.QuerySet:
    start, end = _bounds(month)
    return StoredEvent.objects.filter(recorded_at__gte=start, recorded_at__lt=end)


def months_before(before: date) -> Iterator[date]:
    """The months with stored events before `before`, oldest first (each is archived before the next
    is looked for)."""
    while True:
        first = StoredEvent.objects.filter(recorded_at__lt=_bounds(before)[0]).aggregate(m=models.Min("recorded_at"))
        if first["m"] is None:
            return
        yield first["m"].astimezone(UTC).date().replace(day=1)


def _refusals(month: date, last_position: int) -> list[str]:
    """What still needs the month's events."""
    found = []
    start, end = _bounds(month)
    needed = (
        Delivery.objects.filter(
            status__in=Delivery.BLOCKING, stored_event__recorded_at__gte=start, stored_event__recorded_at__lt=end
        )
        .values("handler", "status")
        .annotate(n=models.Count("id"))
        .order_by("handler", "status")
    )
    found += [f"{row['n']} {row['status']} deliveries to {row['handler']} still need them" for row in needed]
    behind = Checkpoint.objects.filter(
        name__in=[t.name for t in subscriptions.trackers()], position__lt=last_position
    ).order_by("name")
    found += [f"position reader {c.name} is at {c.position}, before {last_position}" for c in behind]
    # Handlers of this code only: a relay covers them as it runs. One no code runs any more would
    # find none of the month's events to cover if it came back.
    uncovered = Subscriber.objects.filter(
        name__in=[s.name for s in subscriptions.all()], covered_position__lt=last_position
    ).order_by("name")
    found += [f"subscriber {s.name} is covered only up to {s.covered_position} (run a relay)" for s in uncovered]
    return found


def month_archive(
    *,
    month: date,
    directory: Path,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Archived:
    """Write `month`'s stored events to `directory`, check the file, then remove them from the table.

    Raises `ArchiveRefused` (and writes nothing) while anything still needs them, and
    `ArchiveCorrupt` (and removes nothing) when the file does not read back as the table says.
    """
    events = _month_events(month)
    total = events.count()
    if not total:
        raise ArchiveRefused(f"{month:%Y-%m}: no stored events")
    last_position = events.aggregate(m=models.Max("position"))["m"]
    if problems := _refusals(month, last_position):
        raise ArchiveRefused(f"{month:%Y-%m} is still needed: " + "; ".join(problems))
    on_partitions = partitions.partitioned(partitions.EVENTS)
    if on_partitions:
        # The month in partitions of its own (out of DEFAULT, if it was recorded there), to detach.
        try:
            for table in partitions.KEYS:
                partitions.month_partition_create(table=table, month=month)
        except OperationalError as exc:
            raise ArchiveRefused(f"{month:%Y-%m}: its partitions could not be made now ({exc})") from exc
    if on_start:
        on_start(total)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file_name(month)
    body = directory / f".{path.name}.body"
    lines, ids, tenants, types = hashlib.sha256(), hashlib.sha256(), Counter(), Counter()
    count, first, last = 0, None, None
    # The events in keyset batches by position: memory stays flat however large the month.
    with gzip.open(body, "wb") as out:
        after = -1
        while batch := list(events.filter(position__gt=after).order_by("position").values_list(*COLUMNS)[:BATCH]):
            for values in batch:
                row = {c: _encode(c, v) for c, v in zip(COLUMNS, values, strict=True)}
                data = _line(row)
                out.write(data)
                lines.update(data)
                ids.update(row["event_id"].encode() + b"\n")
                tenants[row["tenant_id"]] += 1
                types[row["type"]] += 1
                first = row["position"] if first is None else first
                last = row["position"]
            count += len(batch)
            after = batch[-1][COLUMNS.index("position")]
            if on_progress:
                on_progress(len(batch))
    heads = _audit_heads(list(tenants), last)
    parked = _parked(events)
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "month": f"{month:%Y-%m}",
        "columns": list(COLUMNS),
        "events": count,
        "first_position": first,
        "last_position": last,
        "sha256_lines": lines.hexdigest(),
        "sha256_event_ids": ids.hexdigest(),
        "tenants": {
            t: {
                "events": n,
                "parked": parked.get(t, {}),
                "chain_length": heads.get(t, (None, None))[0],
                "chain_head": heads.get(t, (None, None))[1],
            }
            for t, n in sorted(tenants.items())
        },
        "types": dict(sorted(types.items())),
        "written_at": datetime.now(tz=UTC).isoformat(),
    }
    # Two gzip members, the header's and the events': a gzip reader reads them as one stream.
    partial = directory / f".{path.name}.partial"
    with open(partial, "wb") as out:
        out.write(gzip.compress(json.dumps(header, sort_keys=True).encode() + b"\n"))
        with open(body, "rb") as events_part:
            shutil.copyfileobj(events_part, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)
    body.unlink()
    _check_against_table(path, month, header)
    for attempt in range(1, DETACH_TRIES + 1):
        try:
            with transaction.atomic():
                _remove(month, count=count, last=last, on_partitions=on_partitions)
                ArchivedMonth.objects.create(
                    month=month,
                    file_name=path.name,
                    events=count,
                    first_position=first,
                    last_position=last,
                    checksum=header["sha256_lines"],
                    tenants=header["tenants"],
                )
            break
        except OperationalError as exc:
            # A lock not granted in time, or a deadlock with a writer: nothing was removed.
            if not on_partitions:
                raise
            if attempt == DETACH_TRIES:
                raise ArchiveRefused(f"{month:%Y-%m}: its partitions could not be detached now ({exc})") from exc
    return Archived(month, count, path)


def _remove(month: date, *, count: int, last: int, on_partitions: bool) -> None:
    """Take the month's `count` events (positions up to `last`, as written to its file) and their
    finished deliveries out of the tables; raises, removing nothing, if anything else is found."""
    # Nothing may have started needing them since they were read.
    if problems := _refusals(month, last):
        raise ArchiveRefused(f"{month:%Y-%m} is still needed: " + "; ".join(problems))
    if on_partitions:
        _drop_partitions(month, count=count, last=last)
        return
    gone = _month_events(month).filter(position__lte=last)
    Delivery.objects.filter(stored_event__in=gone.values("id")).delete()
    start, end = _bounds(month)
    with connection.cursor() as cursor:
        # Not the ORM's delete, which would first fetch a month of rows to look for relations.
        cursor.execute(
            f"DELETE FROM {StoredEvent._meta.db_table} WHERE recorded_at >= %s AND recorded_at < %s "  # noqa: S608
            "AND position <= %s",
            [start, end, last],
        )
        deleted = cursor.rowcount
    if deleted != count or _month_events(month).exists():
        raise ArchiveCorrupt(f"{month:%Y-%m}: events were recorded into the month while it was archived")


def _drop_partitions(month: date, *, count: int, last: int) -> None:
    """Detach the month's partitions, check what they hold against the file, then drop them."""
    events = partitions.month_partition_detach(table=partitions.EVENTS, month=month)
    deliveries = partitions.month_partition_detach(table=partitions.DELIVERIES, month=month)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*), COALESCE(max(position), 0) FROM {events}")  # noqa: S608
        held, highest = cursor.fetchone()
        if (held, highest) != (count, last):
            raise ArchiveCorrupt(
                f"{month:%Y-%m}: events were recorded into the month while it was archived "
                f"({held} in its partition, {count} in the file)"
            )
        if deliveries is not None:
            blocking = ", ".join(f"'{s}'" for s in Delivery.BLOCKING)
            cursor.execute(f"SELECT count(*) FROM {deliveries} WHERE status IN ({blocking})")  # noqa: S608
            if needed := cursor.fetchone()[0]:
                raise ArchiveRefused(f"{month:%Y-%m} is still needed: {needed} open or dead deliveries")
            cursor.execute(f"DROP TABLE {deliveries}")
        cursor.execute(f"DROP TABLE {events}")


def _audit_heads(tenant_ids: list[str], upto: int) -> dict[str, tuple[int, str]]:
    """Each tenant's audit chain head once the month is in it (none when no module keeps a chain)."""
    try:
        heads = event_bus.ask(AuditChainHeads(tenant_ids=tuple(UUID(t) for t in tenant_ids), upto=upto))
    except NoQueryHandler:
        return {}
    return {str(t): head for t, head in heads.items()}


def _parked(events: models.QuerySet) -> dict[str, dict[str, int]]:
    """Per tenant and reader, how many of the events readers parked (they are in no read model)."""
    rows = list(
        ParkedEvent.objects.filter(stored_event_id__in=events.values("id")).values_list("reader", "stored_event_id")
    )
    tenant_of = dict(StoredEvent.objects.filter(id__in=[pk for _, pk in rows]).values_list("id", "tenant_id"))
    found: dict[str, Counter] = {}
    for reader, pk in rows:
        found.setdefault(str(tenant_of[pk]), Counter())[reader] += 1
    return {t: dict(c) for t, c in found.items()}


def read_header(path: Path) -> dict:
    with gzip.open(path, "rb") as stream:
        header = json.loads(stream.readline())
    if header.get("format") != FORMAT or header.get("format_version") != FORMAT_VERSION:
        raise ArchiveCorrupt(f"{path}: not a {FORMAT} v{FORMAT_VERSION} file")
    return header


def read_events(path: Path) -> Iterator[dict]:
    """The file's events as column dicts, in position order; raises `ArchiveCorrupt` once the last is
    read if the count or either checksum differs from the header's."""
    header = read_header(path)
    lines, ids, count = hashlib.sha256(), hashlib.sha256(), 0
    with gzip.open(path, "rb") as stream:
        stream.readline()
        for data in stream:
            lines.update(data)
            raw = json.loads(data)
            ids.update(raw["event_id"].encode() + b"\n")
            count += 1
            yield {c: _decode(c, v) for c, v in raw.items()}
    found = (count, lines.hexdigest(), ids.hexdigest())
    if found != (header["events"], header["sha256_lines"], header["sha256_event_ids"]):
        raise ArchiveCorrupt(f"{path}: read back {found[0]} events, not as its header says ({header['events']})")


def _check_against_table(path: Path, month: date, header: dict) -> None:
    """The file reads back whole, and its events are the table's: same count, same event ids in the
    same order, as the database lists them now."""
    for _ in read_events(path):
        pass
    ids, count = hashlib.sha256(), 0
    for event_id in _month_events(month).order_by("position").values_list("event_id", flat=True).iterator(BATCH):
        ids.update(str(event_id).encode() + b"\n")
        count += 1
    if (count, ids.hexdigest()) != (header["events"], header["sha256_event_ids"]):
        raise ArchiveCorrupt(f"{path}: the table holds {count} events for {month:%Y-%m}, the file {header['events']}")


def archive_files(directory: Path) -> list[Path]:
    """The archive files in `directory`; raises `ArchiveCorrupt` if a month recorded as archived has
    no file there, or a file that is not the one archived."""
    found = {read_header(p)["month"]: p for p in sorted(directory.glob("events-*.ndjson.gz"))}
    for archived in ArchivedMonth.objects.order_by("month"):
        key = f"{archived.month:%Y-%m}"
        if key not in found:
            raise ArchiveCorrupt(f"{directory} has no file for {key}, archived as {archived.file_name}")
        if read_header(found[key])["sha256_lines"] != archived.checksum:
            raise ArchiveCorrupt(f"{found[key]} is not the file {key} was archived to: its checksum differs")
    return [found[k] for k in sorted(found)]


def archived_rows(directory: Path, types: set[str] | None = None) -> Iterator[tuple]:
    """Every archived event of `directory` as a position reader's row (`parking.READ`), in position
    order across the files; each file's count and checksums are checked as it is read."""
    files = archive_files(directory)

    def rows(path: Path) -> Iterator[tuple]:
        for event in read_events(path):
            if types is None or event["type"] in types:
                yield tuple(event[c] for c in READ)

    return heapq.merge(*(rows(p) for p in files), key=lambda row: row[0])


def archived_count(directory: Path, types: set[str]) -> int:
    """How many archived events of `types` the files of `directory` hold (from their headers)."""
    return sum(n for path in archive_files(directory) for t, n in read_header(path)["types"].items() if t in types)
