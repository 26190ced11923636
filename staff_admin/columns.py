"""How every admin list shows ids, money, times, tenants and errors, so that a list fits a 1366 px
screen and reads the same in every module.

- ids: the first 8 characters, the full id on hover (and every list finds a row by its full id);
- money: right-aligned, with its currency;
- times: short, in the timezone the staff admin activated (the bookstore's), the zone on hover;
- tenants: by name, from one read of the (small) tenants table per request;
- errors: their first line.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

from django.contrib import admin
from django.db.models import Model, Q
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

SHORT_ID = 8
_HEX_PREFIX = re.compile(r"^[0-9a-fA-F]{8}(-?[0-9a-fA-F]{0,4})*$")

_tenant_names: contextvars.ContextVar[dict[uuid.UUID, str] | None] = contextvars.ContextVar(
    "tenant_names", default=None
)


def short_id(value: object) -> SafeString | str:
    if value is None or value == "":
        return ""
    text = str(value)
    return format_html('<code class="short-id" title="{}">{}</code>', text, text[:SHORT_ID])


def money(amount: Decimal | None, currency: str) -> SafeString | str:
    if amount is None:
        return ""
    return format_html(
        '<span class="money">{} {}</span>',
        f"{amount:,.2f}",
        currency,
    )


def local_time(value: datetime | None) -> SafeString | str:
    """`2026-12-01 15:30` in the active timezone; the seconds and the zone's name on hover."""
    if value is None:
        return ""
    local = timezone.localtime(value)
    return format_html(
        '<time class="sw-time" datetime="{}" title="{}">{}</time>',
        value.isoformat(),
        f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}",
        f"{local:%Y-%m-%d %H:%M}",
    )


def first_line(text: str, limit: int = 90) -> SafeString | str:
    """The first line of `text`, cut at `limit` characters; the whole first line on hover."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    if len(line) <= limit:
        return line
    return format_html('<span title="{}">{}…</span>', line, line[: limit - 1])


@contextlib.contextmanager
def tenant_names_for_this_request() -> Iterator[None]:
    token = _tenant_names.set(None)
    try:
        yield
    finally:
        _tenant_names.reset(token)


def tenant_name(tenant_id: uuid.UUID | None) -> str:
    """The tenant's name; the tenants table is read once per admin request, on first use."""
    from tenants.models import Tenant

    if tenant_id is None:
        return ""
    names = _tenant_names.get()
    if names is None:
        names = dict(Tenant.objects.values_list("id", "name"))
        _tenant_names.set(names)
    return names.get(tenant_id, str(tenant_id)[:SHORT_ID])


def id_search(field: str, term: str) -> Q | None:
    """Rows whose UUID `field` is `term`, or starts with it (8 hex digits or more, as the lists
    show): a range of the index on `field`, never a scan. None if `term` is no id."""
    term = term.strip().lower()
    with contextlib.suppress(ValueError):
        return Q(**{field: uuid.UUID(term)})
    if not _HEX_PREFIX.match(term):
        return None
    digits = term.replace("-", "")
    if len(digits) > 32:
        return None
    low = uuid.UUID(digits.ljust(32, "0"))
    high = uuid.UUID(digits.ljust(32, "f"))
    return Q(**{f"{field}__gte": low, f"{field}__lte": high})


class TenantColumnForOperators:
    """Operators (superusers) see every bookstore's rows, so their lists end with a `tenant` column.

    A model whose tenant is a foreign key (`tenant_field = "tenant"`) reads it in the list's one
    query; a record that names its tenant by id alone (`tenant_field = "tenant_id"`) shows the name
    from the tenants read once per request.
    """

    tenant_field = "tenant"

    def get_list_display(self, request: HttpRequest) -> list[str]:
        if request.user.is_superuser:
            return [*self.list_display, "tenant"]
        return self.list_display

    def get_list_select_related(self, request: HttpRequest) -> list[str] | bool:
        related = super().get_list_select_related(request)
        if not request.user.is_superuser or self.tenant_field != "tenant" or related is True:
            return related
        related = list(related or [])
        return related if "tenant" in related else [*related, "tenant"]

    @admin.display(description="tenant")
    def tenant(self, obj: Model) -> str:
        # Used only where `tenant` is no field of the model: a foreign key shows itself.
        return tenant_name(obj.tenant_id)


class TenantForOperators(TenantColumnForOperators):
    """For a model whose tenant is a foreign key: operators also filter the list by bookstore, and
    its page shows the bookstore first (a new row is created for the bookstore they choose)."""

    def get_list_filter(self, request: HttpRequest) -> list:
        list_filter = super().get_list_filter(request)
        # A tenant filter would list every bookstore's name: superusers only.
        return [*list_filter, "tenant"] if request.user.is_superuser else list_filter

    def get_fields(self, request: HttpRequest, obj: Model | None = None) -> list[str]:
        fields = list(super().get_fields(request, obj))
        if request.user.is_superuser and "tenant" not in fields:
            return ["tenant", *fields]
        return fields


class ListColumns:
    """The time and error columns that every list shows alike; an admin names in `list_display`
    those its model has."""

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: Model) -> SafeString | str:
        return local_time(obj.created_at)

    @admin.display(description="updated", ordering="updated_at")
    def updated(self, obj: Model) -> SafeString | str:
        return local_time(obj.updated_at)

    @admin.display(description="sent", ordering="sent_at")
    def sent(self, obj: Model) -> SafeString | str:
        return local_time(obj.sent_at)

    @admin.display(description="last error")
    def error(self, obj: Model) -> SafeString | str:
        return first_line(obj.last_error, limit=60)
