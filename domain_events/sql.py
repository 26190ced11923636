"""Every hand-written SQL statement of the backbone, in one place (PostgreSQL unless named).

These run on every publish, commit or claim, so they are written out once rather than compiled by
the ORM each time. Table and column names come from the models; every value is a bound parameter.
"""

from __future__ import annotations

from domain_events.lock_keys import PRUNE_LOCK, READERS_LOCK
from domain_events.models import OPEN, Checkpoint, Delivery, StoredEvent, Stream, Subscriber

EVENTS = StoredEvent._meta.db_table
DELIVERIES = Delivery._meta.db_table
SUBSCRIBERS = Subscriber._meta.db_table
STREAMS = Stream._meta.db_table
CHECKPOINTS = Checkpoint._meta.db_table

EVENT_COLUMNS = tuple(f.column for f in StoredEvent._meta.concrete_fields)
DELIVERY_COLUMNS = tuple(f.column for f in Delivery._meta.concrete_fields)
# Written when an event is recorded; `id` and `position` are the database's, `revision` its stream's.
EVENT_INSERT_COLUMNS = tuple(c for c in EVENT_COLUMNS if c not in ("id", "position", "revision"))
DELIVERY_INSERT_COLUMNS = (
    "stored_event_id",
    "revision",
    "handler",
    "event_type",
    "tenant_id",
    "aggregate_id",
    "status",
    "attempts",
    "next_attempt_at",
    "lease_token",
    "last_error",
    "resolution",
    "sent_at",
    "created_at",
    "updated_at",
    "event_recorded_at",
)
OPEN_SQL = "(" + ", ".join(f"'{s}'" for s in OPEN) + ")"

NOTIFY = "SELECT pg_notify(%s, %s)"
TRY_PRUNE_LOCK = f"SELECT pg_try_advisory_xact_lock({PRUNE_LOCK})"
TRY_READERS_LOCK = f"SELECT pg_try_advisory_lock({READERS_LOCK})"
# Deferred constraints (Django's foreign keys) checked per statement, inside each savepoint.
CONSTRAINTS_IMMEDIATE = "SET CONSTRAINTS ALL IMMEDIATE"


def listen(channel: str) -> str:
    """LISTEN takes no parameters; the channel is an identifier, quoted."""
    return 'LISTEN "{}"'.format(channel.replace('"', '""'))


# --- recording ------------------------------------------------------------------------------

_EVENT_VALUES = ", ".join("%s::jsonb" if c == "payload" else "%s" for c in EVENT_INSERT_COLUMNS)

# The aggregate's stream row, upserted: its lock is held until commit, so the next transaction on
# the aggregate waits here and takes the next revision. The event's position is drawn after it
# (the column's default), so one aggregate's positions follow its revisions.
_STREAM = f"""stream AS (
    INSERT INTO {STREAMS} (aggregate_id, aggregate_type, tenant_id, revision) VALUES (%s, %s, %s, 1)
    ON CONFLICT (aggregate_id) DO UPDATE SET revision = {STREAMS}.revision + 1
    RETURNING revision
), stored AS (
    INSERT INTO {EVENTS} ({", ".join(EVENT_INSERT_COLUMNS)}, revision)
    SELECT {_EVENT_VALUES}, stream.revision FROM stream
    RETURNING id, revision, recorded_at
)"""

INSERT_EVENT = f"WITH {_STREAM} SELECT id FROM stored"


def stream_cte() -> str:
    """The stream and event part of the recording statement (`make bench` compares it)."""
    return _STREAM


def plain_event_cte() -> str:
    """The event insert alone, without its stream row: the reference `make bench` measures against."""
    return f"""stored AS (
    INSERT INTO {EVENTS} ({", ".join(EVENT_INSERT_COLUMNS)}) VALUES ({_EVENT_VALUES})
    RETURNING id, revision, recorded_at
)"""


def insert_event_and_deliveries(*, notify: bool) -> str:
    """The stream's revision, the event and its deliveries in one statement: one round trip per
    publish.

    With `notify`, the statement also wakes the relays (PostgreSQL sends one NOTIFY per channel
    and transaction at commit, however many events the transaction records).
    """
    wake = ", (SELECT pg_notify(%s, '')) AS wake" if notify else ""
    return f"""
WITH {_STREAM}
INSERT INTO {DELIVERIES} ({", ".join(DELIVERY_INSERT_COLUMNS)})
SELECT stored.id, stored.revision, h.handler, %s, %s, %s, 'pending', 0, h.due, %s, '', '', h.sent_at, %s, %s,
       stored.recorded_at
  FROM stored, unnest(%s::text[], %s::timestamptz[], %s::timestamptz[]) AS h(handler, due, sent_at){wake}
RETURNING id, handler"""


# Lock the stream rows of several aggregates in one order (creating the missing ones), so that two
# transactions recording events of the same aggregates never wait for each other in a circle.
LOCK_STREAMS = f"""
WITH wanted AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(types)s::text[], %(tenants)s::uuid[])
        AS w(aggregate_id, aggregate_type, tenant_id)
), created AS (
    INSERT INTO {STREAMS} (aggregate_id, aggregate_type, tenant_id, revision)
    SELECT aggregate_id, aggregate_type, tenant_id, 0 FROM wanted ORDER BY aggregate_id
    ON CONFLICT (aggregate_id) DO NOTHING
)
SELECT s.aggregate_id FROM {STREAMS} s WHERE s.aggregate_id = ANY(%(ids)s::uuid[]) ORDER BY s.aggregate_id FOR UPDATE"""

# --- the readers' head ----------------------------------------------------------------------

# The last position drawn, then the open transactions of this database that hold the events
# table's write lock, oldest first (migration 0014): see `domain_events.head`.
FENCE = "SELECT drawn, holders, pids, apps, starts FROM domain_events_fence()"
DRAWN = "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM domain_events_position_seq"
HEAD = f"SELECT COALESCE(MAX(position), 0) FROM {EVENTS}"

# --- position readers -----------------------------------------------------------------------


def reader_batch(columns: tuple[str, ...]) -> str:
    """A position reader's batch in one statement (`domain_events.tracking`): its checkpoint row,
    locked (no row when another process holds it, or when it is missing), with the `columns` of
    its next events up to the head (NULL when there are none); and the checkpoint moved past them,
    to be committed with the reader's writes. Its attempts, retry time and error are cleared; the
    row returns them as they were, and when it was last moved."""
    read = ", ".join(columns)
    return f"""
WITH c AS (
    SELECT position, attempts, retry_at, last_error, updated_at FROM {CHECKPOINTS}
     WHERE name = %(name)s FOR UPDATE SKIP LOCKED
), r AS (
    SELECT {", ".join(f"e.{c}" for c in columns)} FROM c, LATERAL (
        SELECT {read} FROM {EVENTS}
         WHERE position > c.position AND position <= %(top)s AND type = ANY(%(types)s)
         ORDER BY position LIMIT %(size)s
    ) e
), moved AS (
    UPDATE {CHECKPOINTS} k
       SET position = CASE WHEN (SELECT count(*) FROM r) = %(size)s THEN (SELECT max(position) FROM r) ELSE %(top)s END,
           attempts = 0, retry_at = NULL, last_error = '', updated_at = %(now)s
      FROM c WHERE k.name = %(name)s AND c.position < %(top)s
)
SELECT c.position, c.attempts, c.retry_at, c.last_error, c.updated_at, {", ".join(f"r.{c}" for c in columns)}
  FROM c LEFT JOIN r ON true ORDER BY r.position"""


# --- the executor ---------------------------------------------------------------------------

_D = ", ".join("d." + c for c in DELIVERY_COLUMNS)
_E = ", ".join("e." + c for c in EVENT_COLUMNS)


def _blocker(mine: str, tokens: str = "NULL", *, open_only: bool = False) -> str:
    """The first unfinished (or dead) delivery of the same handler and aggregate whose event comes
    earlier in the aggregate's stream, leaving out the rows the statement locks itself: those of
    `mine` (an array of ids), under one of `tokens` where named and open where `open_only`. The
    first event of its aggregate (revision 1) has nothing before it: the function is not called
    (`OFFSET 0` keeps the sub-query whole, so that its condition is tested before the call
    rather than on what the call returned).

    A function (migration 0019) rather than a sub-query: its statement keeps its plan for the
    session, where a sub-query was planned again on every run over every partition."""
    return f"""
LEFT JOIN LATERAL (
    SELECT * FROM domain_events_blocker(
        d.aggregate_id, d.handler, d.revision, {mine}, {tokens}, {"true" if open_only else "false"}
    ) WHERE d.revision > 1 OFFSET 0
) b ON true"""


# The first earlier event of the same aggregate that the handler subscribes to but has no delivery
# for: recorded by a publisher running code without the handler, and not yet covered
# (`subscribers`). The executor writes the missing deliveries and waits behind them. A function
# (migration 0019), like the blocker, and like it not called for an aggregate's first event.
_UNCOVERED = (
    "CASE WHEN d.revision > 1 THEN domain_events_uncovered(d.handler, d.aggregate_id, e.position, d.revision) END"
)


_SELECT_LOCKED = f"SELECT {_D}, {_E}, b.id, b.status, b.next_attempt_at, {_UNCOVERED}"
# Below, a delivery is joined to its event on (id, recorded_at), the events' primary key: where
# the tables are partitioned by month (`partitions`), only the event's month is searched.

# Where a statement names its deliveries by id, the months of their events (`recorded`, the
# partition key) may come with the ids: the `_IN_MONTHS` variants add them to the WHERE clause, so
# that PostgreSQL searches only those months' partitions rather than every month's index. Without
# them (a message sent before Celery tasks carried them), the ids alone find the same rows.
_D_IN_MONTHS = "AND d.event_recorded_at = ANY(%(recorded)s) AND e.recorded_at = ANY(%(recorded)s)"


def _lock_leased(in_months: str) -> str:
    """The fast path and the workers: lock the leased rows, read their events and find what holds
    each back, in one statement."""
    return f"""
{_SELECT_LOCKED}
  FROM {DELIVERIES} d JOIN {EVENTS} e ON e.id = d.stored_event_id AND e.recorded_at = d.event_recorded_at
  {_blocker("%(ids)s::bigint[]", "%(tokens)s::uuid[]", open_only=True)}
 WHERE d.id = ANY(%(ids)s) AND d.status IN {OPEN_SQL} AND d.lease_token = ANY(%(tokens)s) {in_months}
 ORDER BY e.position, d.id
   FOR UPDATE OF d"""


LOCK_LEASED = _lock_leased("")
LOCK_LEASED_IN_MONTHS = _lock_leased(_D_IN_MONTHS)


# A worker's delivery of a handler that calls out: stamped as started under its lease token (not
# started before: another copy of its message is at work), with its event and what holds it back,
# in one statement. The stamp keeps relays from sending it again while the handler runs.
def _start_leased(in_month: str) -> str:
    return f"""
WITH d AS (
    UPDATE {DELIVERIES}
       SET started_at = %(now)s, next_attempt_at = %(until)s, updated_at = %(now)s
     WHERE id = %(id)s AND lease_token = %(token)s AND status IN {OPEN_SQL} AND started_at IS NULL {in_month}
 RETURNING *
)
{_SELECT_LOCKED}
  FROM d JOIN {EVENTS} e ON e.id = d.stored_event_id AND e.recorded_at = d.event_recorded_at
  {_blocker("ARRAY[%(id)s]::bigint[]")}"""


START_LEASED = _start_leased("")
# A message that names its event's month (`recorded`): PostgreSQL searches that month alone.
START_LEASED_IN_MONTH = _start_leased("AND event_recorded_at = %(recorded)s")

# Relays, for in-process handlers: the row lock is the claim. Take the due rows first (SKIP
# LOCKED), then read their events and blockers in the same statement.
LOCK_DUE = f"""
WITH due AS MATERIALIZED (
    SELECT d.id, d.event_recorded_at FROM {DELIVERIES} d
     WHERE d.handler = ANY(%(handlers)s) AND d.status IN {OPEN_SQL} AND d.next_attempt_at <= %(now)s
     ORDER BY d.next_attempt_at
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
)
{_SELECT_LOCKED}
  FROM due JOIN {DELIVERIES} d ON d.id = due.id AND d.event_recorded_at = due.event_recorded_at
  JOIN {EVENTS} e ON e.id = d.stored_event_id AND e.recorded_at = d.event_recorded_at
  {_blocker("(SELECT array_agg(id) FROM due)")}
 ORDER BY e.position, d.id"""

# The same rows again, for the careful pass of a relay's batch.
LOCK_CHOSEN = f"""
{_SELECT_LOCKED}
  FROM {DELIVERIES} d JOIN {EVENTS} e ON e.id = d.stored_event_id AND e.recorded_at = d.event_recorded_at
  {_blocker("%(ids)s::bigint[]", open_only=True)}
 WHERE d.id = ANY(%(ids)s) AND d.status IN {OPEN_SQL} {_D_IN_MONTHS}
 ORDER BY e.position, d.id
   FOR UPDATE OF d"""


def _take(also: str, limit: str) -> str:
    """A worker's take: up to `limit` deliveries of its handler whose messages are still on their
    way (leased, not started, not waiting behind another, and `also`), oldest lease first, under a
    new lease token and a start stamp. The new token makes their own messages stale at once; the
    start stamp gives them back to the relays (as started by a worker that died) if this worker
    dies before it records them."""
    return f"""UPDATE {DELIVERIES} t
       SET lease_token = %(token)s, started_at = %(now)s, next_attempt_at = %(until)s, updated_at = %(now)s
     WHERE (t.id, t.event_recorded_at) IN (
        SELECT id, event_recorded_at FROM {DELIVERIES}
         WHERE handler = %(handler)s AND status IN {OPEN_SQL} AND lease_token IS NOT NULL
           AND started_at IS NULL AND held_by IS NULL{also}
         ORDER BY next_attempt_at
         LIMIT {limit}
           FOR UPDATE SKIP LOCKED)"""


# A Celery worker under backlog: take up to `limit` more deliveries of its handler (`_take`), not
# those of its own message. In the same round trip: which of the message's own rows are still
# leased to it (none: the message is stale).
def _take_in_flight(in_months: str) -> str:
    return f"""
WITH taken AS (
    {_take(" AND id <> ALL(%(mine)s)", "%(limit)s")}
    RETURNING t.id, t.event_recorded_at
)
SELECT id, event_recorded_at, true FROM taken
UNION ALL
SELECT id, event_recorded_at, false FROM {DELIVERIES}
 WHERE id = ANY(%(mine)s) AND lease_token = ANY(%(tokens)s) AND status IN {OPEN_SQL} {in_months}"""


TAKE_IN_FLIGHT = _take_in_flight("")
TAKE_IN_FLIGHT_IN_MONTHS = _take_in_flight("AND event_recorded_at = ANY(%(recorded)s)")

# The same for a handler that calls out, one delivery at a time: the oldest such delivery taken and
# stamped as started, with its event and what holds it back, as `START_LEASED` reads them. The
# worker runs it as it runs a delivery its own message named, with no second look at its lease.
TAKE_AND_START = f"""
WITH d AS (
    {_take("", "1")}
 RETURNING *
)
{_SELECT_LOCKED}
  FROM d JOIN {EVENTS} e ON e.id = d.stored_event_id AND e.recorded_at = d.event_recorded_at
  {_blocker("ARRAY[d.id]::bigint[]")}"""


# Success, and the release of whatever waited behind the succeeded rows (leaving out the rows the
# first part updates: one statement must not update a row twice). A row under someone's lease is
# not released: its lease is its holder's to end, and making it due would let a second claim run it.
# The succeeded ids are named to the second part as an array the statement computes, not as the
# batch's list of constants: the planner estimated a condition on each constant for every index of
# every partition, which took half the statement's planning (0.3 of 0.55 ms for 25 ids).
def _mark_succeeded(in_months: str) -> str:
    return f"""
WITH done AS (
    UPDATE {DELIVERIES} d
       SET status = 'succeeded', attempts = attempts + 1, lease_token = NULL, last_error = '',
           held_by = NULL, completed_at = %(now)s, updated_at = %(now)s
     WHERE d.id = ANY(%(ids)s) {in_months}
 RETURNING d.id
)
UPDATE {DELIVERIES} h
   SET held_by = NULL, next_attempt_at = %(now)s, last_error = '', updated_at = %(now)s
 WHERE h.held_by = ANY(ARRAY(SELECT id FROM done)) AND h.status IN {OPEN_SQL} AND h.lease_token IS NULL
   AND h.id <> ALL(ARRAY(SELECT id FROM done))"""


MARK_SUCCEEDED = _mark_succeeded("")
MARK_SUCCEEDED_IN_MONTHS = _mark_succeeded("AND d.event_recorded_at = ANY(%(recorded)s)")


# The same for one delivery whose handler ran with no lock held (it calls out): fenced by its lease
# token, so an outcome whose lease was taken meanwhile writes nothing. Returns the row's id if written.
def _mark_succeeded_leased(in_month: str) -> str:
    return f"""
WITH done AS (
    UPDATE {DELIVERIES}
       SET status = 'succeeded', attempts = attempts + 1, lease_token = NULL, last_error = '',
           held_by = NULL, completed_at = %(now)s, updated_at = %(now)s
     WHERE id = %(id)s AND lease_token = %(token)s AND status IN {OPEN_SQL} {in_month}
 RETURNING id
), released AS (
    UPDATE {DELIVERIES} h
       SET held_by = NULL, next_attempt_at = %(now)s, last_error = '', updated_at = %(now)s
     WHERE h.held_by = ANY(ARRAY(SELECT id FROM done)) AND h.status IN {OPEN_SQL} AND h.lease_token IS NULL
       AND h.id <> %(id)s
)
SELECT id FROM done"""


MARK_SUCCEEDED_LEASED = _mark_succeeded_leased("")
MARK_SUCCEEDED_LEASED_IN_MONTH = _mark_succeeded_leased("AND event_recorded_at = %(recorded)s")

# A hold written while its blocker was finishing: the blocker's commit released what it could see
# held, and this hold was not yet visible to it. Waiting for each blocker's row lock (FOR SHARE)
# means its writer has ended, so its status is final here; an ended blocker releases its holds.
BLOCKERS_OF_HELD = f"""
SELECT b.id, b.status FROM {DELIVERIES} b
 WHERE b.id IN (SELECT d.held_by FROM {DELIVERIES} d
                 WHERE d.id = ANY(%(ids)s) AND d.event_recorded_at = ANY(%(recorded)s))
 ORDER BY b.id
   FOR SHARE"""

# --- late subscribers -----------------------------------------------------------------------

REGISTER_SUBSCRIBER = f"""
INSERT INTO {SUBSCRIBERS} (name, mode, event_types, first_position, covered_position, first_seen_at, last_seen_at)
VALUES (%(name)s, %(mode)s, %(types)s::jsonb, %(position)s, %(position)s, %(now)s, %(now)s)
ON CONFLICT (name) DO UPDATE SET mode = EXCLUDED.mode, event_types = EXCLUDED.event_types,
                                 last_seen_at = EXCLUDED.last_seen_at"""

# Deliveries a publisher without this handler did not write: every matching event between the
# subscriber's covered position and `head`.
COVER_SUBSCRIBER = f"""
INSERT INTO {DELIVERIES} ({", ".join(DELIVERY_INSERT_COLUMNS)})
SELECT e.id, e.revision, %(name)s, e.type, e.tenant_id, e.aggregate_id, 'pending', 0, %(now)s, NULL, '', '', NULL,
       %(now)s, %(now)s, e.recorded_at
  FROM {EVENTS} e
 WHERE e.position > %(after)s AND e.position <= %(head)s AND e.type = ANY(%(types)s)
ON CONFLICT (stored_event_id, handler, event_recorded_at) DO NOTHING"""
