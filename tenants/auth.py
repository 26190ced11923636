"""Authentication and permissions: API tokens that bring their tenant along, and admin rights for
a tenant's staff on their tenant's business data."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from core.log_context import bind_log_context

# Apps whose models are tenant-scoped business data that a bookstore's staff work with.
TENANT_STAFF_APPS = frozenset(
    getattr(
        settings,
        "TENANT_STAFF_APPS",
        ("orders", "inventory", "payments", "notifications", "webhooks", "analytics", "audit", "domain_events"),
    )
)


class TenantStaffBackend(ModelBackend):
    """Model permissions from groups as usual, plus every permission on tenant business data for
    active staff who belong to a tenant (the admin classes narrow rows to their tenant)."""

    def _is_tenant_staff(self, user) -> bool:
        return bool(user.is_active and user.is_staff and getattr(user, "tenant_id", None))

    def has_perm(self, user_obj, perm: str, obj=None) -> bool:
        if self._is_tenant_staff(user_obj) and perm.split(".", 1)[0] in TENANT_STAFF_APPS:
            return True
        return super().has_perm(user_obj, perm, obj)

    def has_module_perms(self, user_obj, app_label: str) -> bool:
        if self._is_tenant_staff(user_obj) and app_label in TENANT_STAFF_APPS:
            return True
        return super().has_module_perms(user_obj, app_label)


class TenantTokenAuthentication(TokenAuthentication):
    """DRF token authentication that loads the user's tenant in the same query.

    Every API view needs the caller's tenant for scoping; fetching it with the token saves a
    query on every request.
    """

    def authenticate_credentials(self, key: str):
        try:
            token = Token.objects.select_related("user__tenant").get(key=key)
        except Token.DoesNotExist:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        if token.user.tenant_id:
            # On the request's log lines from here on (the request's log scope ends it).
            bind_log_context(tenant_id=token.user.tenant_id)
        return token.user, token
