"""The hand-written SQL statements of webhooks (PostgreSQL): the fan-out's endpoints, a batch's claim
and its outcomes.

Table and column names come from the model; every value is a bound parameter.
"""

from __future__ import annotations

from domain_events.models import StoredEvent
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

DELIVERIES = WebhookDelivery._meta.db_table
ATTEMPTS = WebhookAttempt._meta.db_table
ENDPOINTS = WebhookEndpoint._meta.db_table
EVENTS = StoredEvent._meta.db_table

# Leases the rows of `picked` (a `SELECT id … FOR UPDATE SKIP LOCKED LIMIT n`, compiled by the ORM)
# if the endpoint has fewer senders in flight (live lease tokens; a lease without one counts alone)
# than the limit. The claim holds the endpoint's row lock before this statement starts, so its count
# sees every claim that held it before: exact. Parameters: token, leased until, now, those of
# `picked`, then endpoint id, now, limit.
LEASE = f"""UPDATE {DELIVERIES} SET lease_token = %s, leased_until = %s, updated_at = %s
 WHERE id IN ({{picked}})
   AND (SELECT count(DISTINCT COALESCE(f.lease_token, f.id)) FROM {DELIVERIES} f
         WHERE f.endpoint_id = %s AND f.leased_until > %s) < %s
RETURNING *"""

OPEN_SQL = "(" + ", ".join(f"'{s}'" for s in WebhookDelivery.OPEN) + ")"

# A message's own delivery, if it may go now (open, due, not leased), with whether its endpoint is
# active: the first statement of every send task, and the only one of the many whose delivery an
# earlier batch already sent. Parameters: the delivery's id, then now (twice).
NAMED = f"""SELECT d.endpoint_id, e.is_active FROM {DELIVERIES} d JOIN {ENDPOINTS} e ON e.id = d.endpoint_id
 WHERE d.id = %s AND d.status IN {OPEN_SQL} AND d.next_attempt_at <= %s
   AND (d.leased_until IS NULL OR d.leased_until <= %s)"""

# The fan-out of events (`fan_out.deliveries_fan_out_many`: one or the several of an executor's
# batch): for each event (`n`, its number in the call), the tenant's active endpoints registered when
# it occurred, with what its delivery there would wait for (`waiting.with_waiting`): `blocked`, an
# earlier event of the subject still open for the endpoint; `in_flight`, the senders holding live
# leases; and `present`, whether the endpoint has its delivery already. Written out once, as the ORM
# would compile its subqueries again for every event. The events travel as arrays (parameters by
# name: n, event_id, tenant, subject, occurred, and now); `FAN_OUT_AT` is given their positions
# (`position`), when the executor has read the events already; `FAN_OUT` looks them up.
# The senders in flight are counted once per endpoint (`e`), however many of the events it gets.
_FAN_OUT = f"""WITH ev AS ({{events}}),
e AS MATERIALIZED (
    SELECT e.*, (SELECT count(DISTINCT COALESCE(f.lease_token, f.id)) FROM {DELIVERIES} f
                  WHERE f.endpoint_id = e.id AND f.leased_until > %(now)s) AS in_flight
      FROM {ENDPOINTS} e
     WHERE e.is_active AND e.tenant_id IN (SELECT tenant_id FROM ev)
)
SELECT e.*, ev.n AS event_n, ev.position AS event_position,
       EXISTS (SELECT 1 FROM {DELIVERIES} d
                WHERE d.endpoint_id = e.id AND d.subject = ev.subject AND d.status IN {OPEN_SQL}
                  AND d.position < ev.position) AS blocked,
       EXISTS (SELECT 1 FROM {DELIVERIES} x WHERE x.endpoint_id = e.id AND x.event_id = ev.event_id) AS present
  FROM ev JOIN e ON e.tenant_id = ev.tenant_id AND e.created_at <= ev.occurred_at
 ORDER BY ev.n"""
_EVENTS = """unnest(%(n)s::integer[], %(event_id)s::uuid[], %(tenant)s::uuid[], %(subject)s::varchar[],
              %(occurred)s::timestamptz[]{positions}) AS v(n, event_id, tenant_id, subject, occurred_at{position})"""
FAN_OUT = _FAN_OUT.format(
    events=f"SELECT v.*, (SELECT s.position FROM {EVENTS} s WHERE s.event_id = v.event_id LIMIT 1) AS position"
    f" FROM {_EVENTS.format(positions='', position='')}"
)
FAN_OUT_AT = _FAN_OUT.format(
    events=f"SELECT * FROM {_EVENTS.format(positions=', %(position)s::bigint[]', position=', position')}"
)

# One row per attempted delivery; the lease token fences it (a sender whose lease ran out and was
# taken by another writes nothing). Attempts count up in the row itself, and each written row gets
# its attempt's log row, numbered by its new count. Where a written delivery ended (succeeded or
# dead), the first open delivery of its subject after it becomes due (no message: the sender goes
# on with it or hands it on), unless it is one of the batch's own. One statement reads the rows as
# they were before it: the deliveries it ends are left out of what the next one waits for. The
# first open delivery is looked up per subject on the (endpoint, subject, position) index, one
# probe each, rather than every open delivery of the endpoint tested against its subject.
# Parameters: the rows, then now (4 times) and the endpoint's id.
OUTCOME_ROW = (
    "(%s::uuid, %s::uuid, %s::varchar, %s::integer, %s::text, %s::timestamptz, %s::timestamptz, %s::timestamptz,"
    " %s::timestamptz, %s::integer, %s::text, %s::text)"
)
OUTCOMES = f"""WITH v(id, token, status, last_status_code, last_error, next_attempt_at, enqueued_at, completed_at,
                started_at, duration_ms, response_body, error) AS (VALUES {{rows}}
), written AS (
    UPDATE {DELIVERIES} AS d SET
        status = v.status, attempts = d.attempts + 1, lease_token = NULL, leased_until = NULL,
        last_status_code = v.last_status_code, last_error = v.last_error, last_attempt_at = %s,
        next_attempt_at = v.next_attempt_at, enqueued_at = v.enqueued_at, completed_at = v.completed_at,
        updated_at = %s
    FROM v
    WHERE d.id = v.id AND d.lease_token = v.token
    RETURNING d.id, d.attempts, d.subject, d.status
), ended AS (
    SELECT id, subject FROM written WHERE status NOT IN {OPEN_SQL}
), logged AS (
    INSERT INTO {ATTEMPTS} (delivery_id, number, started_at, duration_ms, status_code, response_body, error)
    SELECT w.id, w.attempts, v.started_at, v.duration_ms, v.last_status_code, v.response_body, v.error
      FROM written w JOIN v ON v.id = w.id
), woken AS (
    UPDATE {DELIVERIES} AS n SET next_attempt_at = %s, enqueued_at = NULL, last_error = '', updated_at = %s
      FROM (SELECT DISTINCT subject FROM ended) s, LATERAL (
           SELECT f.id FROM {DELIVERIES} f
            WHERE f.endpoint_id = %s AND f.subject = s.subject AND f.status IN {OPEN_SQL}
              AND f.id NOT IN (SELECT id FROM ended)
            ORDER BY f.position
            LIMIT 1) first
     WHERE n.id = first.id AND n.id NOT IN (SELECT id FROM v)
)
SELECT id FROM written"""
