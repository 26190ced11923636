"""Moved to `staff_admin.site`; kept only until `domain_events/admin.py` and `webhooks/admin.py`
import it from there."""

from staff_admin.site import StaffAdminSite, panel, tenant_zone

__all__ = ["StaffAdminSite", "panel", "tenant_zone"]
