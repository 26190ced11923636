from __future__ import annotations

from tenants.models import Tenant


def tenant_get_by_slug(*, slug: str) -> Tenant | None:
    """The tenant with this slug, or None."""
    return Tenant.objects.filter(slug=slug).first()
