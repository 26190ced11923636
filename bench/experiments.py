"""Proposed changes to `domain_events`, tried on a copy: patched in at start-up, never edited in place.

    BENCH_EXPERIMENTS=lean_lock make bench

Each experiment is one function that patches the running process (web, publisher, relay, worker:
every process loads `bench.settings`, whose bench app applies them in `ready()`). A figure taken
with an experiment on is compared with the same run's ceilings, like every other figure; the
header names the experiments that were on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence

# The executor's two fixed-shape reads, written once instead of compiled by the ORM on every batch:
# lock the leased deliveries with their events, and tell which of them wait behind an earlier,
# still open delivery of the same handler and aggregate. Same rows, same locks, same order.
LOCK_LEASED = """
SELECT d.id, d.stored_event_id, d.handler, d.event_type, d.tenant_id, d.aggregate_id, d.status, d.attempts,
       d.next_attempt_at, d.lease_token, d.last_error, d.created_at, d.updated_at, d.completed_at,
       e.event_id, e.type, e.version, e.tenant_id, e.aggregate_id, e.occurred_at, e.recorded_at,
       e.correlation_id, e.causation_id, e.payload::text, e.position
  FROM domain_events_delivery d JOIN domain_events_storedevent e ON e.id = d.stored_event_id
 WHERE d.id = ANY(%s) AND d.status IN ('pending', 'failed') AND d.lease_token = ANY(%s)
 ORDER BY d.stored_event_id, d.id
   FOR UPDATE OF d
"""
BLOCKED_BY_EARLIER = """
SELECT d.id FROM domain_events_delivery d
 WHERE d.id = ANY(%s)
   AND EXISTS (SELECT 1 FROM domain_events_delivery o
                WHERE o.handler = d.handler AND o.aggregate_id = d.aggregate_id
                  AND o.stored_event_id < d.stored_event_id AND o.status IN ('pending', 'failed')
                  AND o.id <> ALL(%s))
"""
DELIVERY_FIELDS = (
    "id", "stored_event_id", "handler", "event_type", "tenant_id", "aggregate_id", "status", "attempts",
    "next_attempt_at", "lease_token", "last_error", "created_at", "updated_at", "completed_at",
)  # fmt: skip
EVENT_FIELDS = (
    "event_id", "type", "version", "tenant_id", "aggregate_id", "occurred_at", "recorded_at",
    "correlation_id", "causation_id", "payload", "position",
)  # fmt: skip


def lean_lock() -> None:
    """The executor's lock and ordering check as two hand-written statements (no ORM compilation).

    Measured: the ORM builds the `select_for_update().select_related()` lock and the `Exists()`
    ordering check anew for every batch, about 1 ms of CPU each; on the fast path a batch is one
    event, so they are paid per event (and per order, in the web worker).
    """
    from django.db import connection

    from domain_events import dispatch, tasks
    from domain_events.models import Delivery, StoredEvent
    from domain_events.outbox import Claim

    def execute(claims: Sequence[Claim]) -> dispatch.Report:
        if not claims:
            return dispatch.Report()
        tokens = {c.delivery_id: c.token for c in claims}

        def lock() -> list[Delivery]:
            with connection.cursor() as cursor:
                cursor.execute(LOCK_LEASED, (list(tokens), list(set(tokens.values()))))
                rows = cursor.fetchall()
            out = []
            width = len(DELIVERY_FIELDS)
            for row in rows:
                delivery = Delivery.from_db("default", DELIVERY_FIELDS, row[:width])
                values = list(row[width:])
                values[EVENT_FIELDS.index("payload")] = json.loads(values[EVENT_FIELDS.index("payload")])
                delivery.stored_event = StoredEvent.from_db(
                    "default", ("id", *EVENT_FIELDS), (delivery.stored_event_id, *values)
                )
                if delivery.lease_token == tokens[delivery.pk]:
                    out.append(delivery)
            return out

        report = dispatch._run_batch(lock)
        report.skipped = len(claims) - report.handled
        return report

    def blocked_by_earlier(rows: Sequence[Delivery]) -> set[int]:
        ids = [d.pk for d in rows]
        with connection.cursor() as cursor:
            cursor.execute(BLOCKED_BY_EARLIER, (ids, ids))
            return {row[0] for row in cursor.fetchall()}

    dispatch.execute = execute
    tasks.execute = execute
    dispatch._blocked_by_earlier = blocked_by_earlier


RECORD_EVENT = """
INSERT INTO domain_events_storedevent
    (event_id, type, version, tenant_id, aggregate_id, occurred_at, recorded_at, correlation_id, causation_id, payload)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)
"""
RECORD_EVENT_AND_DELIVERIES = """
WITH stored AS ("""
RECORD_EVENT_AND_DELIVERIES += (
    RECORD_EVENT
    + """ RETURNING id)
INSERT INTO domain_events_delivery
    (stored_event_id, handler, event_type, tenant_id, aggregate_id, status, attempts, next_attempt_at,
     lease_token, last_error, created_at, updated_at, completed_at)
SELECT stored.id, h.handler, %s, %s, %s, 'pending', 0, h.due, %s, '', %s, %s, NULL
  FROM stored, unnest(%s::text[], %s::timestamptz[]) AS h(handler, due)
RETURNING id, handler
"""
)


def lean_record() -> None:
    """`publish` records the event and its deliveries in one hand-written statement.

    Measured: `StoredEvent.objects.create` plus `Delivery.objects.bulk_create` cost about 1 ms of
    CPU per publish (two ORM compilations, two round trips), a fifth of `POST orders/` before any
    handler runs.
    """
    from django.db import connection
    from django.utils import timezone

    from domain_events import outbox
    from domain_events.conf import domain_events_settings

    def record(event, subscriptions):
        now = timezone.now()
        values = (
            event.event_id, event.type, event.version, event.tenant_id, event.aggregate_id, event.occurred_at,
            now, event.correlation_id, event.causation_id, json.dumps(outbox.payload_of(event)),
        )  # fmt: skip
        with connection.cursor() as cursor:
            if not subscriptions:
                cursor.execute(RECORD_EVENT, values)
                return []
            conf = domain_events_settings()
            fast_path = conf["DISPATCH_ON_COMMIT"]
            token = outbox.uuid.uuid4() if fast_path else None
            due = [now + outbox._publisher_lease(s, conf) if fast_path else now for s in subscriptions]
            cursor.execute(
                RECORD_EVENT_AND_DELIVERIES,
                (*values, event.type, event.tenant_id, event.aggregate_id, token, now, now,
                 [s.name for s in subscriptions], due),
            )  # fmt: skip
            rows = cursor.fetchall()
        if not fast_path:
            return []
        return [outbox.Claim(pk, token, handler) for pk, handler in rows]

    outbox.record = record


EXPERIMENTS: dict[str, Callable[[], None]] = {"lean_lock": lean_lock, "lean_record": lean_record}


def active() -> list[str]:
    return [name.strip() for name in os.environ.get("BENCH_EXPERIMENTS", "").split(",") if name.strip()]


def apply_all() -> None:
    for name in active():
        try:
            EXPERIMENTS[name]()
        except KeyError:
            raise SystemExit(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}") from None
