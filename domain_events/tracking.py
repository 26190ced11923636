"""Position readers: consumers that need every event in global order (projections, the audit
chain, the integration relay). The events feed is a query over the numbered events, not a reader.

A reader reads the stored events by `position` from its checkpoint up to the fenced head
(`domain_events.head`: no event below it can still commit), in batches, and its writes commit in
the same transaction as the new checkpoint (as the `eventsourcing` library's tracking records do),
so a batch is applied exactly once and in order, whoever runs it. Relays run them, looking for new
positions every `READER_POLL_INTERVAL`.

Each reader can run against a second set of tables (`target`): a rebuild replays into "rebuild"
from the beginning with its own checkpoint while "live" goes on. A failing batch is rolled back,
its error and attempt count recorded on the checkpoint, and tried again on the handler retry
schedule; an ordered reader cannot skip an event, so it never goes dead: staff see it stalled.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from core import tracing
from core.log_context import log_scope
from core.masking import mask_error, private_values
from core.replica import PRIMARY, primary_position, reads_from_replica, replica_failed
from domain_events import sql
from domain_events.conf import handler_retry_policy
from domain_events.events import DomainEvent
from domain_events.head import head, settled_head
from domain_events.models import (
    Checkpoint,
    StoredEvent,
    private_values_in,
)
from domain_events.parking import READ, load_or_park
from domain_events.retry import kept_error
from domain_events.subscriptions import Tracker, subscriptions, type_names

logger = logging.getLogger(__name__)

LIVE = "live"


@dataclass(frozen=True)
class TrackingContext:
    """What a reader's handler knows about the batch it is given."""

    name: str
    target: str
    after: int  # the checkpoint before this batch
    upto: int  # the checkpoint this batch commits
    positions: Mapping[UUID, int] = field(default_factory=dict)  # each event's position, by event id
    # This process moved the checkpoint to `after`, and nothing else moved it since (another
    # process, a reset, a rebuild's swap): what the handler kept from that batch still holds.
    resumes: bool = False


class PartlyApplied(Exception):
    """Raised by a reader's handler that applied its batch up to `position` and then failed.

    The checkpoint moves to `position` (committed with what the handler wrote so far, so the
    handler must not raise it after a failed database statement) and the rest of the batch is
    tried again on the reader's retry schedule. For readers whose effects cannot be rolled back,
    such as publishing to a message broker: a retry then repeats only what was not confirmed.
    """

    def __init__(self, position: int, cause: Exception) -> None:
        super().__init__(f"applied up to position {position}, then: {cause!r}")
        self.position = position
        self.cause = cause


def checkpoint_name(name: str, target: str = LIVE) -> str:
    return name if target == LIVE else f"{name}@{target}"


def _tracker(name: str) -> Tracker:
    tracker = subscriptions.tracker(name)
    if tracker is None:
        raise LookupError(f"no position reader named {name!r}")
    return tracker


def _ensure_checkpoint(tracker: Tracker, target: str) -> None:
    start = settled_head() if tracker.start == "now" and target == LIVE else 0
    Checkpoint.objects.get_or_create(name=checkpoint_name(tracker.name, target), defaults={"position": start})


def read_batch(name: str, *, target: str = LIVE, batch_size: int | None = None) -> int:
    """Apply the next batch of `name` against `target`; returns how many events it applied.

    Returns 0 without waiting if another process holds this reader's checkpoint.
    """
    return _read_batch(name, target, batch_size, head())[0]


def _read_batch(
    name: str, target: str, batch_size: int | None, top: int, events_from: str = PRIMARY
) -> tuple[int, bool]:
    """(events applied, whether more may be waiting below `top`: the batch was full)."""
    tracker = _tracker(name)
    applied = _apply_batch(tracker, target, batch_size or tracker.batch_size, top, events_from)
    if applied is None:
        # No checkpoint yet: create it (committed on its own, so a failing first batch keeps it).
        _ensure_checkpoint(tracker, target)
        applied = _apply_batch(tracker, target, batch_size or tracker.batch_size, top, events_from)
    return applied or (0, False)


def _apply_batch(
    tracker: Tracker, target: str, size: int, top: int, events_from: str = PRIMARY
) -> tuple[int, bool] | None:
    """One batch up to the head `top`, in one transaction with its checkpoint: (events applied,
    whether the batch was full, so more may wait); None when the checkpoint does not exist.
    The stored events are read from the server `events_from`, which has all of them up to `top`."""
    name = tracker.name
    key = checkpoint_name(name, target)
    failure: PartlyApplied | None = None
    with transaction.atomic():
        claimed = _claim(key, type_names(tracker), size, top, events_from)
        if claimed is None:
            # Held by another process (nothing to do here), or missing (the usual batch pays
            # this extra look-up only when the row is absent or busy).
            return (0, False) if Checkpoint.objects.filter(name=key).exists() else None
        if not claimed.rows:
            return 0, False  # at the head, or moved there: nothing of this reader's below it
        # A full batch stops at its last event; a short one saw everything up to the head.
        full = len(claimed.rows) == size
        upto = claimed.rows[-1][0] if full else top
        try:
            applied = _handle(tracker, target, claimed.position, upto, claimed.rows, claimed.resumes)
        except PartlyApplied as partly:
            failure = partly
            _moved.pop(key, None)
        if failure is not None and failure.position > claimed.position:
            # Progress: the failure that follows counts as the first of a new run of failures.
            Checkpoint.objects.filter(pk=key).update(position=min(failure.position, upto))
        elif failure is not None:
            # No progress: the checkpoint as it was, its run of failures going on.
            Checkpoint.objects.filter(pk=key).update(
                position=claimed.position,
                attempts=claimed.attempts,
                retry_at=claimed.retry_at,
                last_error=claimed.last_error,
            )
    if failure is not None:
        raise failure
    return applied, full


@dataclass(frozen=True)
class _Claimed:
    """A reader's checkpoint as it was when locked, and the rows of its batch."""

    position: int
    attempts: int
    retry_at: datetime | None
    last_error: str
    rows: list[tuple]
    resumes: bool  # see `TrackingContext.resumes`


# The position and time this process last moved each checkpoint to (`TrackingContext.resumes`).
_moved: dict[str, tuple[int, datetime]] = {}


def _claim(key: str, types: list[str], size: int, top: int, events_from: str) -> _Claimed | None:
    """Lock the checkpoint `key` (skipping it when another process holds it) and read the rows of
    its next `size` events of `types` up to `top`; None when it is held or missing.

    Below `top` the checkpoint is moved past the batch at once (to its last event when the batch is
    full, else to `top`), in the caller's transaction: what the reader writes commits with it, and
    a failure rolls both back. On PostgreSQL, with the events on this server, that is one statement."""
    now = timezone.now()
    if connection.vendor == "postgresql" and events_from == PRIMARY:
        with connection.cursor() as cursor:
            cursor.execute(_BATCH_SQL, {"name": key, "top": top, "types": types, "size": size, "now": now})
            found = cursor.fetchall()
        if not found:
            return None
        checkpoint = found[0][:5]
        rows = _read_rows([row[5:] for row in found if row[5] is not None])
    else:
        locked = Checkpoint.objects.select_for_update(skip_locked=True).filter(name=key)
        checkpoint = locked.values_list("position", "attempts", "retry_at", "last_error", "updated_at").first()
        if checkpoint is None:
            return None
        rows = []
        if checkpoint[0] < top:
            unread = StoredEvent.objects.using(events_from).filter(
                position__gt=checkpoint[0], position__lte=top, type__in=types
            )
            rows = list(unread.order_by("position").values_list(*READ)[:size])
            upto = rows[-1][0] if len(rows) == size else top
            Checkpoint.objects.filter(pk=key).update(
                position=upto, attempts=0, retry_at=None, last_error="", updated_at=now
            )
    position, attempts, retry_at, last_error, moved_at = checkpoint
    resumes = _moved.get(key) == (position, moved_at)
    if position < top:
        _moved[key] = (rows[-1][0] if len(rows) == size else top, now)
    return _Claimed(position, attempts, retry_at, last_error, rows, resumes)


_BATCH_SQL = sql.reader_batch(READ)
_READ_FIELDS = tuple(StoredEvent._meta.get_field(name) for name in READ)


def _read_rows(found: list[tuple]) -> list[tuple]:
    """Rows of `READ` as the ORM gives them (`values_list`): the payload's JSON text parsed."""
    converters = [(i, f, c) for i, f in enumerate(_READ_FIELDS) for c in f.get_db_converters(connection)]
    rows = []
    for values in found:
        values = list(values)
        for i, column, convert in converters:
            values[i] = convert(values[i], column.cached_col, connection)
        rows.append(tuple(values))
    return rows


def _handle(tracker: Tracker, target: str, after: int, upto: int, rows: list[tuple], resumes: bool = False) -> int:
    """Give the rows' events (parking those that cannot be read) to the reader's handler, in the
    caller's transaction; returns how many it was given."""
    key = checkpoint_name(tracker.name, target)
    loaded = load_or_park(key, rows)
    events = [event for _, event in loaded]
    if events:
        positions = {event.event_id: row[0] for row, event in loaded}
        # The handler's log lines never show the batch's private values (payment tokens).
        secrets = [value for row, _ in loaded for value in private_values_in(row[2], row[4])]
        try:
            with private_values(secrets), _batch_span(tracker.name, events):
                tracker.handler(events, TrackingContext(tracker.name, target, after, upto, positions, resumes))
        except Exception as exc:
            # Whoever records the failure masks them in its error text (`_record_failure`).
            exc.private_values = secrets
            raise
    return len(events)


def replay_archived(name: str, rows: Iterable[tuple], *, target: str, batch_size: int | None = None) -> Iterator[int]:
    """Apply `rows` (a reader's rows, `parking.READ`, in position order: archived events) to `name`
    against `target`, together with the table's events between them, a batch per transaction with
    its checkpoint; yields how many events each batch applied.

    The table's events are merged in by position, so an event recorded late in a month that was
    archived, and numbered after events of the next month, is still read in its place.
    """
    tracker = _tracker(name)
    _ensure_checkpoint(tracker, target)
    types = set(type_names(tracker))
    key = checkpoint_name(name, target)
    wanted = (r for r in rows if r[2] in types)
    while batch := list(itertools.islice(wanted, batch_size or tracker.batch_size)):
        with transaction.atomic():
            checkpoint = Checkpoint.objects.select_for_update().get(name=key)
            upto = batch[-1][0]
            if upto <= checkpoint.position:
                continue
            table = StoredEvent.objects.filter(position__gt=checkpoint.position, position__lte=upto, type__in=types)
            merged = sorted(
                [r for r in batch if r[0] > checkpoint.position] + list(table.values_list(*READ)), key=lambda r: r[0]
            )
            applied = _handle(tracker, target, checkpoint.position, upto, merged)
            Checkpoint.objects.filter(pk=checkpoint.pk).update(
                position=upto, attempts=0, retry_at=None, last_error="", updated_at=timezone.now()
            )
        yield applied


def _batch_span(name: str, events: list[DomainEvent]):
    """A position reader's batch links to the trace of each of its events (`core.tracing`)."""
    if not tracing.enabled():
        return nullcontext()
    return tracing.batch_span(
        name,
        [
            (
                e.traceparent,
                tracing.event_attributes(
                    event_type=e.type, event_id=e.event_id, tenant_id=e.tenant_id, order_id=getattr(e, "order_id", None)
                ),
            )
            for e in events
        ],
        kind="position reader",
    )


def catch_up(name: str, *, target: str = LIVE, batch_size: int | None = None, max_batches: int | None = None) -> int:
    """Apply batches until `name` is at the head, once every position drawn so far is final (or
    until `max_batches` were applied); returns how many events it applied."""
    return _catch_up(name, target, batch_size, max_batches, settled_head())[0]


def _catch_up(name: str, target: str, batch_size: int | None, max_batches: int | None, top: int) -> tuple[int, bool]:
    """(events applied, whether `name` may still be behind `top`: its last batch was full).

    A short batch read everything up to the head `top`, so no second look follows it: what was
    recorded since is found by the next look at the head."""
    total = 0
    batches = 0
    more = True
    while more and (max_batches is None or batches < max_batches):
        applied, more = _read_batch(name, target, batch_size, top)
        total += applied
        batches += 1
    return total, more


def replay(
    name: str, *, target: str, batch_size: int | None = None, on_progress: Callable[[int], None] | None = None
) -> int:
    """Apply batches of `name` against `target` (a rebuild's or a check's own tables) up to the head
    as it is now, reading the stored events from the replica when one serves reads and has
    replayed everything below that head; returns how many events it applied.

    The bulk of a rebuild: what is recorded meanwhile is read afterwards, from the primary, by
    `read_batch` and `catch_up`."""
    top = head()
    total, more = 0, True
    # Every event up to `top` has committed before this position: a replica past it has them all.
    with reads_from_replica(replayed=primary_position()) as server:
        while more:
            try:
                applied, more = _read_batch(name, target, batch_size, top, events_from=server)
            except (OperationalError, InterfaceError) as exc:
                if server == PRIMARY:
                    raise
                # The batch rolled back with its checkpoint: the primary reads it again.
                replica_failed(exc)
                server = PRIMARY
                continue
            total += applied
            if on_progress and applied:
                on_progress(applied)
    return total


# A relay pass applies at most this many batches per reader, so a reader with a long way to go
# (a new projection over years of events) does not hold up the relay's deliveries.
BATCHES_PER_PASS = 10


def run_due(names: Sequence[str] | None = None) -> int:
    """What relays do: move every reader towards the head, leaving failing ones to their retry
    time; returns how many events they applied."""
    return advance(names)[0]


def advance(names: Sequence[str] | None = None, *, top: int | None = None) -> tuple[int, bool]:
    """`run_due`, also telling whether a reader is still behind (it used up its batches for this
    pass), so the relay comes back to it at once instead of waiting for a notification."""
    trackers = [t for t in subscriptions.trackers() if names is None or t.name in names]
    if not trackers:
        return 0, False
    top = head() if top is None else top
    # One look at every checkpoint, without locking: a reader waiting for its retry time, or
    # already at the head, is left alone without a transaction of its own.
    now = timezone.now()
    idle = {
        name
        for name, position, retry_at in Checkpoint.objects.filter(name__in=[t.name for t in trackers]).values_list(
            "name", "position", "retry_at"
        )
        if position >= top or (retry_at is not None and retry_at > now)
    }
    total, behind = 0, False
    for tracker in trackers:
        if tracker.name in idle:
            continue
        with log_scope(handler=tracker.name):
            try:
                applied, more = _catch_up(tracker.name, LIVE, None, BATCHES_PER_PASS, top)
            except Exception as exc:
                _record_failure(tracker.name, exc)
                continue
        total += applied
        behind = behind or more
    return total, behind


def _record_failure(name: str, exc: Exception) -> None:
    error = kept_error(mask_error(f"{type(exc).__name__}: {exc}", getattr(exc, "private_values", ())))
    logger.warning("position reader %s failed; it will try again: %s", name, error)
    checkpoint = Checkpoint.objects.get(name=name)
    _tracker(name)
    delay = handler_retry_policy(name).delay_for_ever(checkpoint.attempts + 1)
    Checkpoint.objects.filter(pk=name).update(
        attempts=checkpoint.attempts + 1,
        retry_at=timezone.now() + timedelta(seconds=delay),
        last_error=error,
    )


def reset(name: str, *, target: str = LIVE, to: int | str = "beginning") -> int:
    """Move `name`'s checkpoint to the beginning, the head (`"now"`) or a position; returns it."""
    _tracker(name)
    position = 0 if to == "beginning" else settled_head() if to == "now" else int(to)
    Checkpoint.objects.update_or_create(
        name=checkpoint_name(name, target),
        defaults={"position": position, "attempts": 0, "retry_at": None, "last_error": ""},
    )
    return position
