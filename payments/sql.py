"""The hand-written SQL statement of the payments module (PostgreSQL): a capture's claim.

The table name comes from the model; every value is a bound parameter.
"""

from __future__ import annotations

from payments.models import Payment

PAYMENTS = Payment._meta.db_table

# A capture's claim (`services._capture_claim`): the key is written if the payment is pending and
# has none yet (every expression of an UPDATE reads the row as it was), and the row comes back as
# it is now. Parameters: pending, key, pending, now, tenant id, order id.
CLAIM_CAPTURE = f"""
UPDATE {PAYMENTS}
   SET capture_key = CASE WHEN status = %s AND capture_key = '' THEN %s ELSE capture_key END,
       updated_at = CASE WHEN status = %s AND capture_key = '' THEN %s ELSE updated_at END
 WHERE tenant_id = %s AND order_id = %s
RETURNING *"""
