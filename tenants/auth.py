"""Authentication and permissions: API tokens that bring their tenant along, and admin rights for
a tenant's staff on their tenant's business data."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from core.log_context import bind_log_context

if TYPE_CHECKING:
    from tenants.models import ApiToken

# Apps whose models are tenant-scoped business data that a bookstore's staff work with.
TENANT_STAFF_APPS = frozenset(
    getattr(
        settings,
        "TENANT_STAFF_APPS",
        (
            "orders",
            "inventory",
            "payments",
            "notifications",
            "webhooks",
            "analytics",
            "audit",
            "domain_events",
            "inbound",
        ),
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
        token = _token_with_user_and_tenant(key)
        # Unknown, revoked and expired keys get one answer: a caller learns nothing about a key.
        if token is None or not token.is_usable(timezone.now()):
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        if token.user.tenant_id:
            # On the request's log lines from here on (the request's log scope ends it).
            bind_log_context(tenant_id=token.user.tenant_id)
        return token.user, token


@functools.cache
def _token_query() -> tuple[str, list[str], list[str], list[str]]:
    """The statement that reads a token with its user and the user's tenant, and its column names.

    Written out once: every API request runs it, and compiling the same ORM query each time cost
    more than running it.
    """
    from tenants.models import ApiToken, Tenant, User

    q = connection.ops.quote_name
    names = [[f.attname for f in model._meta.concrete_fields] for model in (ApiToken, User, Tenant)]
    columns = [
        [f"{alias}.{q(f.column)}" for f in model._meta.concrete_fields]
        for alias, model in (("k", ApiToken), ("u", User), ("t", Tenant))
    ]
    select = ", ".join(c for group in columns for c in group)
    tables = (
        f"{q(ApiToken._meta.db_table)} k JOIN {q(User._meta.db_table)} u ON u.{q('id')} = k.{q('user_id')}"
        f" LEFT JOIN {q(Tenant._meta.db_table)} t ON t.{q('id')} = u.{q('tenant_id')}"
    )
    # Names from the models, the key a bound parameter.
    statement = f"SELECT {select} FROM {tables} WHERE k.{q('key_hash')} = %s"  # noqa: S608
    return statement, *names


def _token_with_user_and_tenant(key: str) -> ApiToken | None:
    from tenants.models import ApiToken, Tenant, User, token_key_hash

    key_hash = token_key_hash(key)
    if connection.vendor != "postgresql":
        # SQLite (`make run`) hands UUIDs and times back as text: the ORM converts them.
        return ApiToken.objects.select_related("user__tenant").filter(key_hash=key_hash).first()
    statement, token_names, user_names, tenant_names = _token_query()
    with connection.cursor() as cursor:
        cursor.execute(statement, [key_hash])
        row = cursor.fetchone()
    if row is None:
        return None
    a, b = len(token_names), len(token_names) + len(user_names)
    token = ApiToken.from_db("default", token_names, row[:a])
    user = User.from_db("default", user_names, row[a:b])
    tenant = Tenant.from_db("default", tenant_names, row[b:]) if row[b] is not None else None
    User.tenant.field.set_cached_value(user, tenant)
    ApiToken.user.field.set_cached_value(token, user)
    return token
