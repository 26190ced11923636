"""DRF permissions shared by every module's API."""

from rest_framework.permissions import BasePermission


class IsTenantMember(BasePermission):
    """An authenticated user who belongs to a tenant (customers and staff)."""

    message = "This account belongs to no bookstore."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.tenant_id)


class IsTenantStaff(IsTenantMember):
    """Staff of the caller's tenant."""

    message = "Only the bookstore's staff may do this."

    def has_permission(self, request, view) -> bool:
        return super().has_permission(request, view) and request.user.is_staff
