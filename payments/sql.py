"""The hand-written SQL statement of the payments module (PostgreSQL): a capture's claim.

The table name comes from the model; every value is a bound parameter.
"""

from __future__ import annotations

from payments.models import Payment

PAYMENTS = Payment._meta.db_table

# A capture's claim (`services._capture_claim`): the key is written if the payment is the tenant's,
# pending and has none yet (every expression of an UPDATE reads the row as it was), and the row
# comes back as it is now; the caller takes another tenant's row for none. The row is found by its
# order alone, on the order's unique index: with the tenant in the WHERE clause too, a planner
# without statistics may take the tenant's index and read every payment of the tenant.
# Parameters: tenant id, pending, key, tenant id, pending, now, order id.
CLAIM_CAPTURE = f"""
UPDATE {PAYMENTS}
   SET capture_key = CASE WHEN tenant_id = %s AND status = %s AND capture_key = '' THEN %s ELSE capture_key END,
       updated_at = CASE WHEN tenant_id = %s AND status = %s AND capture_key = '' THEN %s ELSE updated_at END
 WHERE order_id = %s
RETURNING *"""
