"""The e-mail log, read-only: what was sent to whom about which event, and what failed."""

from __future__ import annotations

from uuid import UUID

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from notifications.models import EmailMessage
from notifications.selectors import email_list_for_order
from staff_admin.columns import ListColumns, TenantColumnForOperators, first_line, id_search, local_time
from staff_admin.site import panel
from tenants.scoping import ReadOnlyAdminMixin, TenantScopedAdmin


@admin.register(EmailMessage)
class EmailMessageAdmin(ListColumns, TenantColumnForOperators, ReadOnlyAdminMixin, TenantScopedAdmin):
    tenant_field = "tenant_id"
    list_display = ["created", "template", "recipient", "status", "attempts", "sent", "order", "error"]
    list_filter = ["status", "template"]
    search_fields = ["=event_id", "recipient"]
    search_help_text = "An order's id (or its first 8 characters), an event id, or a recipient."
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

    @admin.display(description="order")
    def order(self, obj: EmailMessage) -> SafeString | str:
        return self.admin_site.aggregate_link("order_id", obj.order_id)

    def get_search_results(self, request, queryset, search_term):
        """By the order's id (whole or its first 8 characters), an event id, or a recipient."""
        by_id = id_search("order_id", search_term)
        if by_id is not None:
            return queryset.filter(by_id), False
        return super().get_search_results(request, queryset, search_term)


@admin.site.page_panel("order", order=30)
def order_emails(request: HttpRequest, *, tenant_id: UUID, aggregate_id: UUID) -> SafeString:
    """The e-mails sent (or not) to the customer about the order."""
    emails = email_list_for_order(tenant_id=tenant_id, order_id=aggregate_id)
    return panel(
        panel_id="emails",
        title="E-mails",
        headers=[("E-mail", False), ("To", False), ("Status", False), ("Sent", False)],
        rows=[
            [
                format_html(
                    '<a href="{}">{}</a>', reverse("admin:notifications_emailmessage_change", args=[e.pk]), e.template
                ),
                e.recipient or "-",
                format_html("{}<br><small>{}</small>", e.status, first_line(e.last_error, limit=50))
                if e.last_error
                else e.status,
                local_time(e.sent_at),
            ]
            for e in emails
        ],
        empty="No e-mail about this order yet.",
    )
