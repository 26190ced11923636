"""The hand-written SQL statements of webhook sending (PostgreSQL): a batch's claim and its outcomes.

Table and column names come from the model; every value is a bound parameter.
"""

from __future__ import annotations

from webhooks.models import WebhookDelivery

DELIVERIES = WebhookDelivery._meta.db_table

# Leases the rows of `picked` (a `SELECT id … FOR UPDATE SKIP LOCKED LIMIT n`, compiled by the ORM).
LEASE = (
    f"UPDATE {DELIVERIES} SET lease_token = %s, leased_until = %s, updated_at = %s WHERE id IN ({{picked}}) RETURNING *"
)

# One row per attempted delivery; the lease token fences it (a sender whose lease ran out and was
# taken by another writes nothing). Attempts count up in the row itself.
OUTCOME_ROW = (
    "(%s::uuid, %s::uuid, %s::varchar, %s::integer, %s::text, %s::timestamptz, %s::timestamptz, %s::timestamptz)"
)
OUTCOMES = f"""UPDATE {DELIVERIES} AS d SET
    status = v.status, attempts = d.attempts + 1, lease_token = NULL, leased_until = NULL,
    last_status_code = v.last_status_code, last_error = v.last_error, last_attempt_at = %s,
    next_attempt_at = v.next_attempt_at, enqueued_at = v.enqueued_at, completed_at = v.completed_at,
    updated_at = %s
FROM (VALUES {{rows}}) AS v(id, token, status, last_status_code, last_error, next_attempt_at, enqueued_at, completed_at)
WHERE d.id = v.id AND d.lease_token = v.token
RETURNING d.id"""
