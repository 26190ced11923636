"""Moved to `staff_admin.columns`; kept only until `domain_events/admin.py` and
`webhooks/admin.py` import it from there."""

from staff_admin.columns import (
    ListColumns,
    TenantColumnForOperators,
    TenantForOperators,
    first_line,
    id_search,
    local_time,
    money,
    short_id,
    tenant_name,
)

__all__ = [
    "ListColumns",
    "TenantColumnForOperators",
    "TenantForOperators",
    "first_line",
    "id_search",
    "local_time",
    "money",
    "short_id",
    "tenant_name",
]
