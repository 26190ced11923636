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

# The fan-out of one event (`fan_out.deliveries_fan_out`, run for every event): the tenant's active
# endpoints registered when it occurred, each with the event's position and what a delivery of its
# subject would wait for there (`waiting.with_waiting`): `blocked`, an earlier event of the subject
# still open for the endpoint; `in_flight`, the senders holding live leases. Written out once, as
# the ORM would compile its three subqueries again for every event. `FAN_OUT` looks the event's
# position up (parameters by name: event_id, occurred, tenant, subject, now); `FAN_OUT_AT` is given
# it (`position` instead of event_id), when the executor has read the event already.
_FAN_OUT = f"""SELECT e.*, {{position}} AS event_position,
       EXISTS (SELECT 1 FROM {DELIVERIES} d
                WHERE d.endpoint_id = e.id AND d.subject = %(subject)s AND d.status IN {OPEN_SQL}
                  AND d.position < {{position}}) AS blocked,
       (SELECT count(DISTINCT COALESCE(f.lease_token, f.id)) FROM {DELIVERIES} f
         WHERE f.endpoint_id = e.id AND f.leased_until > %(now)s) AS in_flight
  FROM {ENDPOINTS} e
 WHERE e.created_at <= %(occurred)s AND e.tenant_id = %(tenant)s AND e.is_active"""
FAN_OUT = f"WITH ev AS (SELECT position FROM {EVENTS} WHERE event_id = %(event_id)s LIMIT 1)\n" + _FAN_OUT.format(
    position="(SELECT position FROM ev)"
)
FAN_OUT_AT = _FAN_OUT.format(position="%(position)s::bigint")

# One row per attempted delivery; the lease token fences it (a sender whose lease ran out and was
# taken by another writes nothing). Attempts count up in the row itself, and each written row gets
# its attempt's log row, numbered by its new count. Where a written delivery ended (succeeded or
# dead), the first open delivery of its subject after it becomes due (no message: the sender goes
# on with it or hands it on). One statement reads the rows as they were before it: the deliveries
# it ends are left out of what the next one waits for. Parameters: the rows, then now (4 times)
# and the endpoint's id.
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
     WHERE n.endpoint_id = %s AND n.status IN {OPEN_SQL} AND n.subject IN (SELECT subject FROM ended)
       AND n.id NOT IN (SELECT id FROM v)
       AND NOT EXISTS (
           SELECT 1 FROM {DELIVERIES} o
            WHERE o.endpoint_id = n.endpoint_id AND o.subject = n.subject AND o.status IN {OPEN_SQL}
              AND o.position < n.position AND o.id NOT IN (SELECT id FROM ended))
)
SELECT id FROM written"""
