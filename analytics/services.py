"""Writes of the analytics module: rebuilding and checking projections.

Read-model rows are written only by the projections (`analytics.projections`); these services
decide which set of rows (`Generation`) a projection writes and when the live one is replaced.

Rebuild: a new generation is filled from the stored events (upcast to their current version) by
the projection's own position reader under the target `rebuild`, in keyset batches, while the
live projection goes on. Then, in one short transaction that holds the live checkpoint (so no live
batch commits meanwhile), the rebuild catches up with what was recorded since, the `live` pointer
moves to the new generation and the live checkpoint to the rebuild's position. Readers see the
old figures until that commit and the new ones after it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from analytics.models import Generation
from analytics.projections import PROJECTIONS, Projection, generation_for
from core.replica import reads_from_replica
from domain_events import archive as archive_events
from domain_events import reader_lag, tracking
from domain_events.head import settled_head as head
from domain_events.models import ArchivedMonth, Checkpoint, StoredEvent
from domain_events.subscriptions import subscriptions, type_names

LIVE, REBUILD, CHECK = "live", "rebuild", "check"
MAX_DIFFERENCES = 1000


class UnknownProjection(LookupError):
    """No projection has this name."""

    def __init__(self, names: list[str]) -> None:
        known = ", ".join(PROJECTIONS)
        super().__init__(f"unknown projection {', '.join(map(repr, names))}; known: {known}")
        self.names = names


class ProjectionBusy(RuntimeError):
    """Another process is rebuilding or checking this projection."""


class ArchiveNeeded(RuntimeError):
    """Months of stored events were archived: a replay without their files would give other figures."""

    def __init__(self) -> None:
        months = ", ".join(
            f"{m:%Y-%m}" for m in ArchivedMonth.objects.order_by("month").values_list("month", flat=True)
        )
        super().__init__(f"the stored events of {months} are archived: replay them from their files (--with-archive)")


def projection_get_many(*, names: list[str] | None) -> list[Projection]:
    """The projections named (all of them for none); raises `UnknownProjection` naming the unknown."""
    if not names:
        return list(PROJECTIONS.values())
    unknown = [n for n in names if n not in PROJECTIONS]
    if unknown:
        raise UnknownProjection(unknown)
    return [PROJECTIONS[n] for n in dict.fromkeys(names)]


@contextlib.contextmanager
def _exclusive(name: str, target: str) -> Iterator[None]:
    """One rebuild (or check) of a projection at a time, across processes (PostgreSQL)."""
    if connection.vendor != "postgresql":
        yield
        return
    key = f"{name}@{target}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtext('analytics'), hashtext(%s))", [key])
        if not cursor.fetchone()[0]:
            raise ProjectionBusy(f"{name}: another {target} is running")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtext('analytics'), hashtext(%s))", [key])


def _discard(projection: Projection, generation_id: int) -> None:
    with transaction.atomic():
        for model in projection.models:
            model.objects.filter(generation=generation_id).delete()
        Generation.objects.filter(pk=generation_id).delete()


def _start(projection: Projection, target: str) -> int:
    """A fresh, empty generation for `target`, its reader at the beginning; returns its id."""
    for stale in Generation.objects.filter(projection=projection.name, target=target).values_list("id", flat=True):
        _discard(projection, stale)
    with transaction.atomic():
        generation = Generation.objects.create(projection=projection.name, target=target)
        tracking.reset(projection.name, target=target, to="beginning")
    return generation.id


def _lock_live_checkpoint(name: str) -> Checkpoint:
    """The live checkpoint, locked to the end of the transaction: live batches skip it meanwhile."""
    Checkpoint.objects.get_or_create(name=name, defaults={"position": 0})
    return Checkpoint.objects.select_for_update().get(name=name)


def _position(name: str, target: str) -> int:
    return Checkpoint.objects.get(name=tracking.checkpoint_name(name, target)).position


def events_to_replay(*, name: str, archive: Path | None = None) -> int:
    """How many stored events a full replay of `name` reads, up to the current head, with those of
    the archive's files."""
    types = type_names(subscriptions.tracker(name))
    archived = archive_events.archived_count(archive, set(types)) if archive else 0
    top = head()
    with reads_from_replica():  # a progress bar's total: a replica a moment behind will do
        return archived + StoredEvent.objects.filter(type__in=types, position__lte=top).count()


def _replay_archive(name: str, target: str, archive: Path | None, size: int) -> Iterator[int]:
    """The archived months' events, a batch at a time: what a replay reads before the table's."""
    if archive is None:
        return iter(())
    types = set(type_names(subscriptions.tracker(name)))
    return tracking.replay_archived(name, archive_events.archived_rows(archive, types), target=target, batch_size=size)


@dataclass(frozen=True)
class RebuildResult:
    name: str
    events: int
    position: int
    seconds: float


def projection_rebuild(
    *,
    name: str,
    batch_size: int | None = None,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    archive: Path | None = None,
) -> RebuildResult:
    """Replay every stored event of projection `name` into new tables and swap them in at once.

    With `archive`, a directory of `archive_events` files, their events are replayed first, merged
    by position with the table's. `on_start(total)` is told how many events the replay reads,
    `on_progress(n)` after each batch. Raises `UnknownProjection`, `ProjectionBusy` (another
    rebuild of it is running), `ArchiveNeeded` (months are archived and no archive is given) or
    `ArchiveCorrupt` (a file does not read back whole) and then changes nothing that is live.
    """
    [projection] = projection_get_many(names=[name])
    size = batch_size or projection.batch_size
    started = time.monotonic()
    if archive is None and ArchivedMonth.objects.exists():
        raise ArchiveNeeded()
    with _exclusive(name, REBUILD):
        generation = _start(projection, REBUILD)
        if on_start:
            on_start(events_to_replay(name=name, archive=archive))
        done = 0
        for applied in _replay_archive(name, REBUILD, archive, size):
            done += applied
            if on_progress:
                on_progress(applied)
        # Keyset batches from the rebuild's own checkpoint: memory stays flat however many events.
        # The bulk reads the events from the replica where one serves reads; what was recorded
        # meanwhile is read from the primary.
        done += tracking.replay(name, target=REBUILD, batch_size=size, on_progress=on_progress)
        while applied := tracking.read_batch(name, target=REBUILD, batch_size=size):
            done += applied
            if on_progress:
                on_progress(applied)
        with transaction.atomic():
            live = _lock_live_checkpoint(name)
            applied = tracking.catch_up(name, target=REBUILD, batch_size=size)
            done += applied
            if on_progress and applied:
                on_progress(applied)
            position = _position(name, REBUILD)
            retired = list(Generation.objects.select_for_update().filter(projection=name, target=LIVE))
            for old in retired:
                old.target = f"retired-{old.id}"
                old.save(update_fields=["target"])
            Generation.objects.filter(pk=generation).update(target=LIVE)
            Checkpoint.objects.filter(pk=live.pk).update(
                position=position, attempts=0, retry_at=None, last_error="", updated_at=timezone.now()
            )
            Checkpoint.objects.filter(name=tracking.checkpoint_name(name, REBUILD)).delete()
    # The figures just replaced stay until the next rebuild, so a read that began before the
    # swap still finishes on them; older ones go now.
    just_retired = {old.id for old in retired}
    for old in Generation.objects.filter(projection=name, target__startswith="retired-").exclude(pk__in=just_retired):
        _discard(projection, old.id)
    return RebuildResult(name, done, position, time.monotonic() - started)


# --- checking --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    table: str
    key: dict[str, Any]
    field: str  # "(row)" when the row is missing on one side
    live: Any
    rebuilt: Any


@dataclass(frozen=True)
class CheckResult:
    name: str
    lag: reader_lag.Lag  # how far the live projection was behind the head when the check began
    position: int  # the position both sides were compared at
    differences: list[Difference]


def projection_check(*, name: str, batch_size: int | None = None, archive: Path | None = None) -> CheckResult:
    """Rebuild `name` into scratch tables and compare them with the live read models.

    Both sides are brought to the same position (live batches wait meanwhile) and compared table
    by table in the database; the scratch tables are dropped afterwards. `archive` as for
    `projection_rebuild`. Raises `UnknownProjection`, `ProjectionBusy`, `ArchiveNeeded` or
    `ArchiveCorrupt`.
    """
    [projection] = projection_get_many(names=[name])
    size = batch_size or projection.batch_size
    if archive is None and ArchivedMonth.objects.exists():
        raise ArchiveNeeded()
    with _exclusive(name, CHECK):
        before = reader_lag.lag(name)
        scratch = _start(projection, CHECK)
        try:
            for _ in _replay_archive(name, CHECK, archive, size):
                pass
            tracking.replay(name, target=CHECK, batch_size=size)
            with transaction.atomic():
                _lock_live_checkpoint(name)
                while True:
                    tracking.catch_up(name, batch_size=size)
                    tracking.catch_up(name, target=CHECK, batch_size=size)
                    if _position(name, LIVE) == _position(name, CHECK):
                        break
                position = _position(name, LIVE)
                live = generation_for(projection=name, target=LIVE)
                differences = [d for model in projection.models for d in _differences(model, live, scratch)]
        finally:
            _discard(projection, scratch)
            Checkpoint.objects.filter(name=tracking.checkpoint_name(name, CHECK)).delete()
    return CheckResult(name, before, position, differences)


def _differences(model: Any, live: int, rebuilt: int) -> list[Difference]:
    """Rows of `model` that differ between two generations, found by the database."""
    opts = model._meta
    [key_constraint] = [c for c in opts.constraints if c.name.endswith("_key")]
    keys = [opts.get_field(f) for f in key_constraint.fields if f != "generation"]
    values = [f for f in opts.concrete_fields if not f.primary_key and f.name != "generation" and f not in keys]
    pk = opts.pk.column
    distinct = "IS DISTINCT FROM" if connection.vendor == "postgresql" else "IS NOT"
    qn = connection.ops.quote_name
    table = qn(opts.db_table)
    select = [f"COALESCE(l.{qn(k.column)}, r.{qn(k.column)})" for k in keys]
    select += [f"l.{qn(pk)} IS NOT NULL", f"r.{qn(pk)} IS NOT NULL"]
    select += [f"l.{qn(v.column)}, r.{qn(v.column)}" for v in values]
    join = " AND ".join(f"l.{qn(k.column)} = r.{qn(k.column)}" for k in keys)
    differs = " OR ".join(f"l.{qn(v.column)} {distinct} r.{qn(v.column)}" for v in values)
    statement = (
        f"SELECT {', '.join(select)} FROM (SELECT * FROM {table} WHERE generation = %s) l "  # noqa: S608
        f"FULL OUTER JOIN (SELECT * FROM {table} WHERE generation = %s) r ON {join} "
        f"WHERE l.{qn(pk)} IS NULL OR r.{qn(pk)} IS NULL OR {differs} "
        f"ORDER BY {', '.join(str(i + 1) for i in range(len(keys)))} LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, [live, rebuilt, MAX_DIFFERENCES])
        rows = cursor.fetchall()
    found: list[Difference] = []
    for row in rows:
        key = {k.name: row[i] for i, k in enumerate(keys)}
        in_live, in_rebuilt = row[len(keys)], row[len(keys) + 1]
        if not (in_live and in_rebuilt):
            found.append(
                Difference(
                    opts.db_table,
                    key,
                    "(row)",
                    "present" if in_live else "missing",
                    "present" if in_rebuilt else "missing",
                )
            )
            continue
        for i, field in enumerate(values):
            left, right = row[len(keys) + 2 + 2 * i], row[len(keys) + 3 + 2 * i]
            if left != right:
                found.append(Difference(opts.db_table, key, field.name, left, right))
    return found
