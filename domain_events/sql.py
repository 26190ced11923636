"""Every hand-written SQL statement of the backbone, in one place (PostgreSQL unless named).

These run on every publish, commit or claim, so they are written out once rather than compiled by
the ORM each time. Table and column names come from the models; every value is a bound parameter.
"""

from __future__ import annotations

from domain_events.models import OPEN, Delivery, StoredEvent, Subscriber

EVENTS = StoredEvent._meta.db_table
DELIVERIES = Delivery._meta.db_table
SUBSCRIBERS = Subscriber._meta.db_table

EVENT_COLUMNS = tuple(f.column for f in StoredEvent._meta.concrete_fields)
DELIVERY_COLUMNS = tuple(f.column for f in Delivery._meta.concrete_fields)
# Written when an event is recorded; `id` and `position` are the database's.
EVENT_INSERT_COLUMNS = tuple(c for c in EVENT_COLUMNS if c not in ("id", "position"))
DELIVERY_INSERT_COLUMNS = (
    "stored_event_id",
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
)
OPEN_SQL = "(" + ", ".join(f"'{s}'" for s in OPEN) + ")"
BLOCKING_SQL = "(" + ", ".join(f"'{s}'" for s in Delivery.BLOCKING) + ")"

# Advisory locks (arbitrary, fixed 64-bit keys): the sequencer's, and the pruning relay's.
SEQUENCER_LOCK = 7246183015249174627
PRUNE_LOCK = 7246183015249174628

NOTIFY = "SELECT pg_notify(%s, %s)"
TRY_PRUNE_LOCK = f"SELECT pg_try_advisory_xact_lock({PRUNE_LOCK})"
# Deferred constraints (Django's foreign keys) checked per statement, inside each savepoint.
CONSTRAINTS_IMMEDIATE = "SET CONSTRAINTS ALL IMMEDIATE"


def listen(channel: str) -> str:
    """LISTEN takes no parameters; the channel is an identifier, quoted."""
    return 'LISTEN "{}"'.format(channel.replace('"', '""'))


# --- recording ------------------------------------------------------------------------------

_EVENT_VALUES = ", ".join(["%s"] * (len(EVENT_INSERT_COLUMNS) - 1)) + ", %s::jsonb"
INSERT_EVENT = f"INSERT INTO {EVENTS} ({', '.join(EVENT_INSERT_COLUMNS)}) VALUES ({_EVENT_VALUES})"


def insert_event_and_deliveries(*, notify: bool) -> str:
    """The event and its deliveries in one statement: one round trip per publish.

    With `notify`, the statement also wakes the relays (PostgreSQL sends one NOTIFY per channel
    and transaction at commit, however many events the transaction records).
    """
    wake = ", (SELECT pg_notify(%s, '')) AS wake" if notify else ""
    return f"""
WITH stored AS (INSERT INTO {EVENTS} ({", ".join(EVENT_INSERT_COLUMNS)}) VALUES ({_EVENT_VALUES}) RETURNING id)
INSERT INTO {DELIVERIES} ({", ".join(DELIVERY_INSERT_COLUMNS)})
SELECT stored.id, h.handler, %s, %s, %s, 'pending', 0, h.due, %s, '', '', h.sent_at, %s, %s
  FROM stored, unnest(%s::text[], %s::timestamptz[], %s::timestamptz[]) AS h(handler, due, sent_at){wake}
RETURNING id, handler"""


# --- sequencing -----------------------------------------------------------------------------

# Number every committed event that has no position yet, in insertion order, under the lock.
# Volatile target-list expressions run after the sort, so nextval follows `id` order.
SEQUENCE = f"""
WITH todo AS MATERIALIZED (
    SELECT id FROM {EVENTS} WHERE position IS NULL ORDER BY id LIMIT %s
), numbered AS MATERIALIZED (
    SELECT id, nextval('domain_events_position_seq') AS position FROM todo ORDER BY id
)
UPDATE {EVENTS} e SET position = numbered.position FROM numbered WHERE e.id = numbered.id"""

# Take the sequencer's lock; and its statement looks rows up by key only, so index access is right
# for it whatever the statistics say (an ANALYZE of an empty table would plan a table scan).
SEQUENCER_PRELUDE = f"SELECT set_config('enable_seqscan', 'off', true), pg_advisory_xact_lock({SEQUENCER_LOCK})"

# One run: SEQUENCER_PRELUDE, then SEQUENCE with a snapshot taken after the lock, then NOTIFY
# (batch, channel, payload) if it numbered any, all in one statement: a database function
# (migration 0007), so a run is one round trip in a transaction of its own and the lock is never
# held while the client is away. Returns how many events it numbered.
SEQUENCE_RUN = "SELECT domain_events_sequence(%s, %s, %s)"
# The same for relays, unless another run holds the lock: then -1 at once (migration 0009).
SEQUENCE_RUN_UNLESS_BUSY = "SELECT domain_events_sequence_unless_busy(%s, %s, %s)"

HEAD = f"SELECT COALESCE(MAX(position), 0) FROM {EVENTS}"

# --- the executor ---------------------------------------------------------------------------

_D = ", ".join("d." + c for c in DELIVERY_COLUMNS)
_E = ", ".join("e." + c for c in EVENT_COLUMNS)


def _blocker(mine: str) -> str:
    """The first unfinished (or dead) delivery of the same handler and aggregate whose event comes
    earlier by position, leaving out `mine`: the rows the statement locks itself."""
    return f"""
LEFT JOIN LATERAL (
    SELECT o.id, o.status, o.next_attempt_at
      FROM {DELIVERIES} o JOIN {EVENTS} oe ON oe.id = o.stored_event_id
     WHERE o.aggregate_id = d.aggregate_id AND o.handler = d.handler AND o.status IN {BLOCKING_SQL}
       AND oe.position < e.position AND NOT ({mine})
     ORDER BY oe.position
     LIMIT 1
) b ON true"""


_SELECT_LOCKED = f"SELECT {_D}, {_E}, b.id, b.status, b.next_attempt_at"

# The fast path and the workers: lock the leased rows, read their events and find what holds each
# back, in one statement.
LOCK_LEASED = f"""
{_SELECT_LOCKED}
  FROM {DELIVERIES} d JOIN {EVENTS} e ON e.id = d.stored_event_id
  {_blocker(f"o.id = ANY(%(ids)s) AND o.lease_token = ANY(%(tokens)s) AND o.status IN {OPEN_SQL}")}
 WHERE d.id = ANY(%(ids)s) AND d.status IN {OPEN_SQL} AND d.lease_token = ANY(%(tokens)s)
   AND e.position IS NOT NULL
 ORDER BY e.position, d.id
   FOR UPDATE OF d"""

# Relays, for in-process handlers: the row lock is the claim. Take the due rows first (SKIP
# LOCKED), then read their events and blockers in the same statement.
LOCK_DUE = f"""
WITH due AS MATERIALIZED (
    SELECT d.id FROM {DELIVERIES} d
     WHERE d.handler = ANY(%(handlers)s) AND d.status IN {OPEN_SQL} AND d.next_attempt_at <= %(now)s
     ORDER BY d.next_attempt_at
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
)
{_SELECT_LOCKED}
  FROM due JOIN {DELIVERIES} d ON d.id = due.id JOIN {EVENTS} e ON e.id = d.stored_event_id
  {_blocker("o.id IN (SELECT id FROM due)")}
 WHERE e.position IS NOT NULL
 ORDER BY e.position, d.id"""

# The same rows again, for the careful pass of a relay's batch.
LOCK_CHOSEN = f"""
{_SELECT_LOCKED}
  FROM {DELIVERIES} d JOIN {EVENTS} e ON e.id = d.stored_event_id
  {_blocker(f"o.id = ANY(%(ids)s) AND o.status IN {OPEN_SQL}")}
 WHERE d.id = ANY(%(ids)s) AND d.status IN {OPEN_SQL} AND e.position IS NOT NULL
 ORDER BY e.position, d.id
   FOR UPDATE OF d"""

# Success, and the release of whatever waited behind the succeeded rows (leaving out the rows the
# first part updates: one statement must not update a row twice). A row under someone's lease is
# not released: its lease is its holder's to end, and making it due would let a second claim run it.
MARK_SUCCEEDED = f"""
WITH done AS (
    UPDATE {DELIVERIES}
       SET status = 'succeeded', attempts = attempts + 1, lease_token = NULL, last_error = '',
           held_by = NULL, completed_at = %(now)s, updated_at = %(now)s
     WHERE id = ANY(%(ids)s)
 RETURNING id
)
UPDATE {DELIVERIES} h
   SET held_by = NULL, next_attempt_at = %(now)s, last_error = '', updated_at = %(now)s
  FROM done
 WHERE h.held_by = done.id AND h.status IN {OPEN_SQL} AND h.lease_token IS NULL AND h.id <> ALL(%(ids)s)"""

# --- late subscribers -----------------------------------------------------------------------

REGISTER_SUBSCRIBER = f"""
INSERT INTO {SUBSCRIBERS} (name, mode, event_types, first_position, covered_position, first_seen_at, last_seen_at)
SELECT %(name)s, %(mode)s, %(types)s::jsonb, head.p, head.p, %(now)s, %(now)s
  FROM (SELECT COALESCE(MAX(position), 0) AS p FROM {EVENTS}) head
ON CONFLICT (name) DO UPDATE SET mode = EXCLUDED.mode, event_types = EXCLUDED.event_types,
                                 last_seen_at = EXCLUDED.last_seen_at"""

# Deliveries a publisher without this handler did not write: every matching event between the
# subscriber's covered position and `head`.
COVER_SUBSCRIBER = f"""
INSERT INTO {DELIVERIES} ({", ".join(DELIVERY_INSERT_COLUMNS)})
SELECT e.id, %(name)s, e.type, e.tenant_id, e.aggregate_id, 'pending', 0, %(now)s, NULL, '', '', NULL,
       %(now)s, %(now)s
  FROM {EVENTS} e
 WHERE e.position > %(after)s AND e.position <= %(head)s AND e.type = ANY(%(types)s)
ON CONFLICT (stored_event_id, handler) DO NOTHING"""
