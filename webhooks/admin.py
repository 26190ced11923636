"""Webhooks in the admin: endpoints with their recent health, deliveries with every attempt.

Secrets are not shown here at all: they appear once, in the API's create and rotate responses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from core.errors import ApplicationError
from domain_events.admin_lists import LargeTablePaginator, aggregate_link, choices_filter, event_type_choices
from staff_admin.columns import ListColumns, TenantColumnForOperators, first_line, id_search, local_time, short_id
from staff_admin.site import panel
from tenants.scoping import ReadOnlyAdminMixin, TenantScopedAdmin
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.selectors import delivery_list_for_subject, endpoints_with_health, webhook_trouble_for
from webhooks.services import (
    delivery_redeliver,
    endpoint_recover,
    endpoint_rotate_secret,
    endpoint_set_active,
    endpoint_url_validate,
    event_types_validate,
)

if TYPE_CHECKING:
    from tenants.models import Tenant


def url_cell(url: str, limit: int = 48) -> SafeString:
    return format_html('<span title="{}">{}</span>', url, url if len(url) <= limit else url[: limit - 1] + "…")


class FailingFilter(admin.SimpleListFilter):
    title = "answering"
    parameter_name = "failing"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Failing (every attempt since a time)"), ("no", "Answering")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> QuerySet[WebhookEndpoint]:
        if self.value() == "yes":
            return queryset.filter(failing_since__isnull=False)
        if self.value() == "no":
            return queryset.filter(failing_since__isnull=True)
        return queryset


class RecoverForm(forms.Form):
    since = forms.DateTimeField(help_text="Deliveries whose last attempt failed at or after this time.")


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https")

    class Meta:
        model = WebhookEndpoint
        fields = ["tenant", "url", "event_types", "is_active", "description"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        try:
            if cleaned.get("url"):
                endpoint_url_validate(cleaned["url"])
            event_types_validate(cleaned.get("event_types") or [])
        except ValidationError as exc:
            self.add_error(None, exc)
        return cleaned


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ListColumns, TenantColumnForOperators, TenantScopedAdmin):
    form = WebhookEndpointForm
    list_display = ["endpoint", "is_active", "health", "failing", "disabled_reason", "created"]
    list_filter = ["is_active", FailingFilter]
    search_fields = ["url", "description"]
    ordering = ["-created_at"]
    readonly_fields = ["disabled_reason", "failing_since"]
    actions = ["enable", "disable", "recover_since"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebhookEndpoint]:
        return endpoints_with_health(endpoints=super().get_queryset(request))

    @admin.display(description="deliveries, last 24 h")
    def health(self, endpoint: WebhookEndpoint) -> str:
        return f"{endpoint.recent_succeeded} ok · {endpoint.recent_open} retrying · {endpoint.recent_dead} dead"

    @admin.display(description="endpoint", ordering="url")
    def endpoint(self, endpoint: WebhookEndpoint) -> SafeString:
        if endpoint.description:
            return format_html("{}<br><small>{}</small>", url_cell(endpoint.url), endpoint.description[:60])
        return url_cell(endpoint.url)

    @admin.display(description="failing since", ordering="failing_since")
    def failing(self, endpoint: WebhookEndpoint) -> SafeString | str:
        return local_time(endpoint.failing_since)

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            # Its first secret, as from the API; staff read a secret only from the API's responses.
            endpoint_rotate_secret(endpoint=obj)

    @admin.action(description="Enable the selected endpoints")
    def enable(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            endpoint_set_active(endpoint=endpoint, is_active=True)
        self.message_user(request, f"Enabled {queryset.count()} endpoint(s).")

    @admin.action(description="Recover the selected endpoints' failed deliveries since a time")
    def recover_since(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> TemplateResponse | None:
        """Ask since when, then send again what failed or went dead since then."""
        endpoints = list(queryset)
        form = RecoverForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            context = {
                **self.admin_site.each_context(request),
                "title": "Recover webhook deliveries",
                "opts": self.model._meta,
                "form": form,
                "selected": endpoints,
                "action": "recover_since",
                "submit": "Recover",
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(request, "admin/webhooks/webhookendpoint/recover.html", context)
        recovered = 0
        for endpoint in endpoints:
            try:
                recovered += endpoint_recover(endpoint=endpoint, since=form.cleaned_data["since"])
            except ApplicationError as exc:
                self.message_user(request, f"{endpoint.url}: {exc.message}", messages.WARNING)
        self.message_user(request, f"Sending {recovered} deliveries again.", messages.SUCCESS)
        return None

    @admin.action(description="Disable the selected endpoints")
    def disable(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            endpoint_set_active(endpoint=endpoint, is_active=False)
        self.message_user(request, f"Disabled {queryset.count()} endpoint(s).")


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    fields = ["number", "started_at", "status_code", "duration_ms", "response_body", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ListColumns, TenantColumnForOperators, ReadOnlyAdminMixin, TenantScopedAdmin):
    tenant_field = "tenant_id"
    # Event and what it concerns share a column, status and attempts another: the list fits
    # 1366 px beside its filters.
    list_display = ["delivery", "created", "event", "endpoint_url", "state", "next_attempt", "error"]
    # A delivery per event and endpoint: no full count, no SELECT DISTINCT for the type's choices,
    # and newest first along an index (`webhook_delivery_created`; per tenant `webhook_delivery_tenant`).
    list_filter = ["status", choices_filter("event_type", "event type", event_type_choices)]
    search_fields = ["=event_id", "=subject", "=id"]
    search_help_text = "A delivery id (or its first 8 characters), an event id, or the id of the order it concerns."
    ordering = ["-created_at"]
    paginator = LargeTablePaginator
    show_full_result_count = False
    list_select_related = ["endpoint"]
    inlines = [WebhookAttemptInline]
    actions = ["redeliver"]
    readonly_fields = [
        "id",
        "endpoint",
        "event_id",
        "event_type",
        "subject",
        "position",
        "status",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "last_attempt_at",
        "created_at",
        "completed_at",
        "payload",
    ]
    fields = readonly_fields

    @admin.display(description="delivery", ordering="id")
    def delivery(self, obj: WebhookDelivery) -> SafeString | str:
        return short_id(obj.pk)

    @admin.display(description="endpoint")
    def endpoint_url(self, obj: WebhookDelivery) -> SafeString:
        return url_cell(obj.endpoint.url, limit=32)

    @admin.display(description="event · concerns")
    def event(self, obj: WebhookDelivery) -> SafeString:
        return format_html(
            "{}<br><small>{}</small>", obj.event_type, aggregate_link(self.admin_site, obj.event_type, obj.subject)
        )

    @admin.display(description="status", ordering="status")
    def state(self, obj: WebhookDelivery) -> SafeString:
        answer = f", last answer {obj.last_status_code}" if obj.last_status_code else ""
        return format_html("{}<br><small>{} attempt(s){}</small>", obj.status, obj.attempts, answer)

    @admin.display(description="next attempt", ordering="next_attempt_at")
    def next_attempt(self, obj: WebhookDelivery) -> SafeString | str:
        return local_time(obj.next_attempt_at_if_open)

    def get_search_results(self, request, queryset, search_term):
        """By a delivery's id (whole or its first 8 characters), an event id or an order's id."""
        by_id = id_search("id", search_term)
        if by_id is not None and len(search_term.strip()) < 36:
            return queryset.filter(by_id), False
        return super().get_search_results(request, queryset, search_term)

    @admin.action(description="Redeliver the selected deliveries")
    def redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        sent = 0
        for delivery in queryset:
            try:
                delivery_redeliver(delivery=delivery)
                sent += 1
            except ApplicationError as exc:
                self.message_user(request, f"{delivery.pk}: {exc.message}", level=messages.WARNING)
        self.message_user(request, f"Redelivering {sent} deliveries.")


# --- the dashboard and the order page -----------------------------------------------------------


@admin.site.dashboard_panel(order=50)
def webhook_trouble(request: HttpRequest, tenant: Tenant) -> SafeString:
    """Counts of what needs a look: retrying and dead webhook deliveries, failing endpoints."""
    trouble = webhook_trouble_for(tenant_id=tenant.id)
    deliveries = reverse("admin:webhooks_webhookdelivery_changelist")
    endpoints = reverse("admin:webhooks_webhookendpoint_changelist")
    return panel(
        panel_id="webhook-trouble",
        title="Webhooks",
        facts=[
            (
                format_html('<a href="{}?status__exact=failed">Deliveries retrying</a>', deliveries),
                trouble["failed"],
                trouble["failed"] > 0,
            ),
            (
                format_html('<a href="{}?status__exact=dead">Dead deliveries</a>', deliveries),
                trouble["dead"],
                trouble["dead"] > 0,
            ),
            (
                format_html('<a href="{}?failing=yes&amp;is_active__exact=1">Failing endpoints</a>', endpoints),
                trouble["failing_endpoints"],
                trouble["failing_endpoints"] > 0,
            ),
        ],
    )


@admin.site.page_panel("order", order=40)
def order_webhook_deliveries(request: HttpRequest, *, tenant_id: UUID, aggregate_id: UUID) -> SafeString:
    """Every webhook delivery of the order's events: to which endpoint, how it went."""
    deliveries = delivery_list_for_subject(tenant_id=tenant_id, subject=str(aggregate_id))
    return panel(
        panel_id="webhook-deliveries",
        title="Webhook deliveries",
        headers=[("Event", False), ("Endpoint", False), ("Status", False), ("Attempts", True), ("Last error", False)],
        rows=[
            [
                format_html(
                    '<a href="{}">{}</a>',
                    reverse("admin:webhooks_webhookdelivery_change", args=[d.pk]),
                    d.event_type,
                ),
                url_cell(d.endpoint.url, limit=40),
                d.status,
                d.attempts,
                first_line(d.last_error, limit=60),
            ]
            for d in deliveries
        ],
        empty="No webhook delivery for this order.",
        wide=True,
    )
