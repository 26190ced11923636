"""The audit trail, read-only for staff (their tenant's entries), searchable by aggregate and
correlation id."""

from django.contrib import admin
from django.utils.html import format_html
from django.utils.safestring import SafeString

from audit.chain import canonical
from audit.models import AuditEntry
from domain_events.admin_lists import aggregate_link
from staff_admin.columns import TenantColumnForOperators, local_time
from tenants.scoping import ReadOnlyAdminMixin, TenantScopedAdmin


@admin.register(AuditEntry)
class AuditEntryAdmin(TenantColumnForOperators, ReadOnlyAdminMixin, TenantScopedAdmin):
    tenant_field = "tenant_id"
    list_display = ["sequence", "event_type", "concerns", "actor", "occurred", "short_hash"]
    list_filter = ["event_type"]
    search_fields = ["=aggregate_id", "=correlation_id", "=event_id"]
    ordering = ["-id"]
    show_full_result_count = False
    fields = [
        "tenant_id",
        "sequence",
        "event_id",
        "event_type",
        "aggregate_id",
        "actor",
        "correlation_id",
        "causation_id",
        "occurred_at",
        "recorded_at",
        "position",
        "previous_hash",
        "hash",
        "payload_pretty",
    ]
    readonly_fields = fields

    @admin.display(description="concerns")
    def concerns(self, obj: AuditEntry) -> SafeString | str:
        return aggregate_link(self.admin_site, obj.event_type, obj.aggregate_id)

    @admin.display(description="occurred", ordering="occurred_at")
    def occurred(self, obj: AuditEntry) -> SafeString | str:
        return local_time(obj.occurred_at)

    @admin.display(description="hash")
    def short_hash(self, obj: AuditEntry) -> str:
        return obj.hash[:12]

    @admin.display(description="payload")
    def payload_pretty(self, obj: AuditEntry) -> str:
        return format_html("<pre class='sw-payload'>{}</pre>", canonical(obj.payload))
