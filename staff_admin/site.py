"""The staff admin: Django's admin, opening on the bookstore's dashboard, showing every time in the
bookstore's timezone.

Modules never import one another, yet the dashboard and an order's page gather what several of
them know. So each module contributes its own part here, from its `admin.py`:

- `dashboard_panel`: a block of the home page, drawn from the module's own reads for one tenant;
- `page_panel`: a block of an aggregate's page (an order's payment, its reservation, its e-mails),
  given the tenant and the aggregate's id;
- `link_aggregate`: which admin page shows the aggregate that an event names by a field such as
  `order_id`, so that events and deliveries link to what they concern.

The site scopes nothing itself: every list and page keeps `tenants.scoping`; the panels are given
the tenant (the staff member's own) and filter by it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import update_wrapper
from typing import TYPE_CHECKING
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.template.response import SimpleTemplateResponse, TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from core.replica import reads_from_replica
from staff_admin.columns import short_id, tenant_names_for_this_request
from tenants.throttling import login_wait

if TYPE_CHECKING:
    from tenants.models import Tenant

# The admin's read side: the home page and the lists, read from the replica when one serves reads.
# Change pages read what they are about to write, on the primary (and in its transaction).
READ_SIDE_VIEWS = frozenset({"index", "app_index", "changelist_view"})

DashboardRender = Callable[[HttpRequest, "Tenant"], SafeString]
PageRender = Callable[..., SafeString]  # (request, *, tenant_id, aggregate_id)


@dataclass(frozen=True)
class Panel:
    name: str
    order: int
    render: Callable = field(compare=False)


def panel(
    *,
    panel_id: str,
    title: str,
    facts: list[tuple[str, object, bool]] | None = None,
    headers: list[tuple[str, bool]] | None = None,
    rows: list[list[object]] | None = None,
    empty: str = "Nothing yet.",
    link: tuple[str, str] | None = None,
    wide: bool = False,
) -> SafeString:
    """A panel in the admin's one look: facts `(label, value, alert)`, a table (headers `(text,
    numeric)`), or `empty`; and a `link` `(href, text)` to the whole list."""
    return render_to_string(
        "admin/sw_panel.html",
        {
            "panel_id": panel_id,
            "title": title,
            "facts": facts or [],
            "headers": headers or [],
            "rows": rows or [],
            "empty": empty,
            "link": link,
            "wide": wide,
        },
    )


def tenant_zone(user) -> ZoneInfo:
    """The zone a user's admin pages are shown in: their bookstore's; UTC for operators without one."""
    tenant = user.tenant if getattr(user, "tenant_id", None) else None
    try:
        return ZoneInfo(tenant.timezone) if tenant is not None else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


class StaffAdminSite(admin.AdminSite):
    site_header = "ShelfWise"
    site_title = "ShelfWise admin"
    index_title = "Dashboard"
    index_template = "admin/staff_dashboard.html"
    # The lists get the whole width of a 1366 px screen; the home page links every list.
    enable_nav_sidebar = False

    def __init__(self, name: str = "admin") -> None:
        super().__init__(name)
        self._dashboard: list[Panel] = []
        self._pages: dict[str, list[Panel]] = defaultdict(list)
        self._aggregates: dict[str, str] = {}

    # --- what modules contribute -------------------------------------------------------------

    def dashboard_panel(self, *, order: int) -> Callable[[DashboardRender], DashboardRender]:
        """Register `render(request, tenant) -> html` as a block of the home page (lowest order first)."""

        def register(render: DashboardRender) -> DashboardRender:
            name = f"{render.__module__}.{render.__qualname__}"
            self._dashboard = sorted({*self._dashboard, Panel(name, order, render)}, key=lambda p: (p.order, p.name))
            return render

        return register

    def page_panel(self, aggregate: str, *, order: int) -> Callable[[PageRender], PageRender]:
        """Register `render(request, *, tenant_id, aggregate_id) -> html` as a block of the page of
        an `aggregate` (such as "order"), lowest order first."""

        def register(render: PageRender) -> PageRender:
            name = f"{render.__module__}.{render.__qualname__}"
            panels = {*self._pages[aggregate], Panel(name, order, render)}
            self._pages[aggregate] = sorted(panels, key=lambda p: (p.order, p.name))
            return render

        return register

    def link_aggregate(self, field_name: str, url_name: str) -> None:
        """Events whose aggregate is their `field_name` (such as "order_id") link to the admin page
        `url_name` (such as "admin:orders_order_change") of that aggregate."""
        self._aggregates[field_name] = url_name

    # --- what pages use ----------------------------------------------------------------------

    def page_panels(self, aggregate: str, request: HttpRequest, *, tenant_id: UUID, aggregate_id: UUID) -> list:
        return [p.render(request, tenant_id=tenant_id, aggregate_id=aggregate_id) for p in self._pages[aggregate]]

    def aggregate_url(self, field_name: str | None, aggregate_id: UUID) -> str | None:
        url_name = self._aggregates.get(field_name or "")
        if url_name is None:
            return None
        try:
            return reverse(url_name, args=[aggregate_id], current_app=self.name)
        except NoReverseMatch:
            return None

    def aggregate_link(self, field_name: str | None, aggregate_id: UUID) -> SafeString | str:
        """The aggregate's short id, linked to its admin page when a module registered one."""
        url = self.aggregate_url(field_name, aggregate_id)
        if url is None:
            return short_id(aggregate_id)
        return format_html('<a href="{}">{}</a>', url, short_id(aggregate_id))

    # --- the home page -----------------------------------------------------------------------

    def dashboard_tenant(self, request: HttpRequest) -> Tenant | None:
        """The staff member's bookstore; for an operator, the one named by `?tenant=<slug>`."""
        from tenants.models import Tenant

        user = request.user
        if user.tenant_id is not None:
            return user.tenant
        if user.is_superuser and request.GET.get("tenant"):
            return Tenant.objects.filter(slug=request.GET["tenant"]).first()
        return None

    def index(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        from tenants.models import Tenant

        tenant = self.dashboard_tenant(request)
        context = {
            "dashboard_tenant": tenant,
            "panels": [panel.render(request, tenant) for panel in self._dashboard] if tenant else [],
            "tenant_choices": (
                list(Tenant.objects.order_by("name").values_list("slug", "name"))
                if request.user.is_superuser and request.user.tenant_id is None
                else []
            ),
        }
        if tenant is not None:
            context["subtitle"] = tenant.name
        return super().index(request, {**context, **(extra_context or {})})

    # --- the login page ----------------------------------------------------------------------

    def login(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        """Django's login, throttled as `POST auth/token` is (the same limits and counts): a guess
        past the limit is refused before its password is checked, even a right one, with 429 and
        `Retry-After`. Known and unknown usernames get the same answer."""
        if request.method == "POST":
            wait = login_wait(request)
            if wait is not None:
                return self._login_refused(request, wait, extra_context)
        return super().login(request, extra_context)

    def _login_refused(self, request: HttpRequest, wait: int, extra_context: dict | None) -> HttpResponse:
        from django.contrib.admin.forms import AdminAuthenticationForm
        from django.contrib.auth import REDIRECT_FIELD_NAME
        from django.forms.utils import ErrorDict

        form = AdminAuthenticationForm(request, data={"username": request.POST.get("username", "")})
        # The form only carries the message: validating it would check the password.
        form._errors, form.cleaned_data = ErrorDict(), {}
        form.add_error(None, f"Too many login attempts. Try again in {wait} seconds.")
        context = {
            **self.each_context(request),
            "title": "Log in",
            "subtitle": None,
            "app_path": request.get_full_path(),
            "username": "",
            "form": form,
            REDIRECT_FIELD_NAME: request.POST.get(REDIRECT_FIELD_NAME, ""),
            **(extra_context or {}),
        }
        response = TemplateResponse(request, self.login_template or "admin/login.html", context, status=429)
        response["Retry-After"] = str(wait)
        return response

    # --- every admin view --------------------------------------------------------------------

    def admin_view(self, view: Callable, cacheable: bool = False) -> Callable:
        """Every admin page renders its times in the bookstore's timezone (the template is
        rendered here, inside that zone, rather than after the view returns). The home page and
        the lists, when only looked at (GET), read from the replica if one serves reads."""
        protected = super().admin_view(view, cacheable)

        def rendered(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            response = protected(request, *args, **kwargs)
            if isinstance(response, SimpleTemplateResponse) and not response.is_rendered:
                response.render()
            return response

        read_side = reads_from_replica()(rendered) if getattr(view, "__name__", "") in READ_SIDE_VIEWS else None

        def in_tenant_time(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            zone = tenant_zone(request.user) if request.user.is_authenticated else ZoneInfo("UTC")
            render = read_side if read_side is not None and request.method in ("GET", "HEAD") else rendered
            with timezone.override(zone), tenant_names_for_this_request():
                return render(request, *args, **kwargs)

        return update_wrapper(in_tenant_time, protected)
