"""The one mechanism that scopes data to the caller's tenant, for the API and the admin.

Every tenant-owned model has a `tenant_id` (a foreign key to `Tenant` or, for event records, a
plain UUID). API views inherit `TenantApiMixin`; admin classes inherit `TenantScopedAdmin`. A row of
another tenant is simply not in the queryset, so it is a 404, never a 403.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.db.models import QuerySet
from rest_framework.exceptions import NotAuthenticated, PermissionDenied

if TYPE_CHECKING:
    from tenants.models import Tenant, User


def scope_to_user(queryset: QuerySet, user: User) -> QuerySet:
    """Rows of `user`'s tenant; superusers without a tenant see every tenant."""
    if user.is_superuser and user.tenant_id is None:
        return queryset
    if user.tenant_id is None:
        return queryset.none()
    return queryset.filter(tenant_id=user.tenant_id)


class TenantApiMixin:
    """For DRF views: `self.tenant` is the caller's tenant; `scoped()` narrows a queryset to it."""

    request: object

    @property
    def tenant(self) -> Tenant:
        user = self.request.user
        if user is None or not user.is_authenticated:
            raise NotAuthenticated()
        if user.tenant_id is None:
            raise PermissionDenied("This account belongs to no bookstore.")
        return user.tenant

    def scoped(self, queryset: QuerySet) -> QuerySet:
        return scope_to_user(queryset, self.request.user)


class TenantScopedAdmin(admin.ModelAdmin):
    """Staff see and change only their tenant's rows; superusers see all.

    New rows get the staff member's tenant; foreign-key choices are narrowed to that tenant too.
    """

    tenant_field = "tenant"

    def get_queryset(self, request):
        return scope_to_user(super().get_queryset(request), request.user)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        related = db_field.related_model
        if hasattr(related, "tenant_id") and not request.user.is_superuser:
            kwargs["queryset"] = scope_to_user(related._default_manager.all(), request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_exclude(self, request, obj=None):
        exclude = list(super().get_exclude(request, obj) or [])
        if not request.user.is_superuser and self.tenant_field not in exclude:
            exclude.append(self.tenant_field)
        return exclude

    def delete_view(self, request, object_id, extra_context=None):
        # Django asks for the delete permission before it looks the row up, so a read-only list
        # would answer another tenant's id with 403 where every other page says it does not exist.
        if self.get_object(request, unquote(object_id)) is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        return super().delete_view(request, object_id, extra_context)

    def save_model(self, request, obj, form, change) -> None:
        if not change and not request.user.is_superuser and getattr(obj, "tenant_id", None) is None:
            obj.tenant_id = request.user.tenant_id
        super().save_model(request, obj, form, change)


class ReadOnlyAdminMixin:
    """Admin pages that show records nobody edits by hand (logs, trails, the outbox)."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
