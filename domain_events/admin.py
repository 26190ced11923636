"""Stored events and their deliveries, for staff: what happened, who handled it, what is stuck."""

from django.contrib import admin, messages
from django.utils.html import format_html

from domain_events.dispatch import redrive
from domain_events.models import Delivery, StoredEvent
from tenants.scoping import TenantScopedAdmin


class ReadOnlyAdmin(TenantScopedAdmin):
    tenant_field = "tenant_id"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class DeliveryInline(admin.TabularInline):
    model = Delivery
    fields = ["handler", "status", "attempts", "next_attempt_at", "last_error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(StoredEvent)
class StoredEventAdmin(ReadOnlyAdmin):
    list_display = ["position", "type", "version", "aggregate_id", "tenant_id", "occurred_at", "correlation_id"]
    list_filter = ["type", "tenant_id"]
    search_fields = ["=event_id", "=aggregate_id", "=correlation_id"]
    date_hierarchy = "occurred_at"
    ordering = ["-id"]
    fields = [
        "event_id",
        "type",
        "version",
        "position",
        "tenant_id",
        "aggregate_id",
        "occurred_at",
        "recorded_at",
        "correlation_id",
        "causation_id",
        "payload_pretty",
    ]
    readonly_fields = fields
    inlines = [DeliveryInline]
    show_full_result_count = False

    @admin.display(description="payload")
    def payload_pretty(self, obj: StoredEvent) -> str:
        return format_html("<pre style='white-space: pre-wrap'>{}</pre>", obj.pretty_payload())


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["id", "event_type", "handler", "status", "attempts", "next_attempt_at", "short_error"]
    list_filter = ["status", "handler", "event_type", "tenant_id"]
    search_fields = ["=stored_event__event_id", "=aggregate_id", "handler"]
    list_select_related = ["stored_event"]
    ordering = ["-id"]
    actions = ["redrive_selected"]
    fields = [
        "stored_event",
        "event_type",
        "handler",
        "tenant_id",
        "aggregate_id",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "created_at",
        "updated_at",
        "completed_at",
        "payload_pretty",
    ]
    readonly_fields = fields
    show_full_result_count = False

    @admin.display(description="last error")
    def short_error(self, obj: Delivery) -> str:
        return (obj.last_error[:80] + "…") if len(obj.last_error) > 80 else obj.last_error

    @admin.display(description="event payload")
    def payload_pretty(self, obj: Delivery) -> str:
        return format_html("<pre style='white-space: pre-wrap'>{}</pre>", obj.stored_event.pretty_payload())

    @admin.action(description="Redrive selected dead deliveries")
    def redrive_selected(self, request, queryset) -> None:
        count = redrive(queryset=queryset)
        skipped = queryset.count() - count
        self.message_user(request, f"Re-queued {count} dead deliveries.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request, f"{skipped} selected deliveries were not dead and were left alone.", messages.INFO
            )
