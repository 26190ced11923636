"""Webhooks in the admin: endpoints with their recent health, deliveries with every attempt.

Secrets are not shown here at all: they appear once, in the API's create and rotate responses.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from core.errors import ApplicationError
from tenants.scoping import ReadOnlyAdminMixin, TenantScopedAdmin
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.selectors import endpoints_with_health
from webhooks.services import (
    delivery_redeliver,
    endpoint_recover,
    endpoint_rotate_secret,
    endpoint_set_active,
    endpoint_url_validate,
    event_types_validate,
)


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
class WebhookEndpointAdmin(TenantScopedAdmin):
    form = WebhookEndpointForm
    list_display = ["url", "is_active", "description", "health", "failing_since", "disabled_reason", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["url", "description"]
    readonly_fields = ["disabled_reason", "failing_since"]
    actions = ["enable", "disable", "recover_since"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebhookEndpoint]:
        return endpoints_with_health(endpoints=super().get_queryset(request))

    @admin.display(description="deliveries, last 24 h")
    def health(self, endpoint: WebhookEndpoint) -> str:
        return f"{endpoint.recent_succeeded} ok · {endpoint.recent_open} retrying · {endpoint.recent_dead} dead"

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
class WebhookDeliveryAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    tenant_field = "tenant_id"
    list_display = ["created_at", "event_type", "endpoint", "subject", "status", "attempts", "last_status_code"]
    list_filter = ["status", "event_type"]
    search_fields = ["=event_id", "=subject", "=id"]
    ordering = ["-created_at"]
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
