"""The e-mail log, read-only: what was sent to whom about which event, and what failed."""

from django.contrib import admin

from notifications.models import EmailMessage
from tenants.scoping import ReadOnlyAdminMixin, TenantScopedAdmin


@admin.register(EmailMessage)
class EmailMessageAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    tenant_field = "tenant_id"
    list_display = ["created_at", "template", "recipient", "status", "attempts", "sent_at", "order_id"]
    list_filter = ["status", "template"]
    search_fields = ["=order_id", "=event_id", "recipient"]
    ordering = ["-created_at"]
    show_full_result_count = False
    readonly_fields = [
        "tenant_id",
        "event_id",
        "event_type",
        "order_id",
        "template",
        "recipient",
        "subject",
        "message_id",
        "status",
        "attempts",
        "last_error",
        "sent_at",
        "created_at",
        "updated_at",
    ]
    fields = readonly_fields
