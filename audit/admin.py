"""The audit trail, read-only for staff (their tenant's entries), searchable by aggregate,
correlation id and actor, and filtered by who caused the entries."""

from django.contrib import admin
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from audit.chain import canonical
from audit.models import AuditEntry
from domain_events.actors import KINDS, SYSTEM
from domain_events.admin_lists import LargeTablePaginator, aggregate_link, choices_filter, event_type_choices
from staff_admin.columns import TenantColumnForOperators, local_time
from tenants.scoping import ReadOnlyAdminMixin, TenantScopedAdmin


class ActorFilter(admin.SimpleListFilter):
    """By kind of actor (customers, staff, operators, the system), or one actor exactly (the link
    on each entry's actor)."""

    title = "actor"
    parameter_name = "actor"

    def lookups(self, request, model_admin):
        return [(kind, kind) for kind in (*KINDS, SYSTEM)]

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if value in KINDS:
            return queryset.filter(actor__startswith=f"{value}:")
        return queryset.filter(actor=value)


@admin.register(AuditEntry)
class AuditEntryAdmin(TenantColumnForOperators, ReadOnlyAdminMixin, TenantScopedAdmin):
    tenant_field = "tenant_id"
    list_display = ["sequence", "event_type", "concerns", "caused_by", "occurred", "short_hash"]
    # The trail grows with every event: no full count, no SELECT DISTINCT for the type's choices.
    list_filter = [ActorFilter, choices_filter("event_type", "event type", event_type_choices)]
    search_fields = ["=aggregate_id", "=correlation_id", "=event_id", "=actor"]
    ordering = ["-id"]
    paginator = LargeTablePaginator
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

    @admin.display(description="actor")
    def caused_by(self, obj: AuditEntry) -> SafeString:
        """The actor, linking to the entries of the same actor."""
        return format_html('<a href="?{}">{}</a>', urlencode({ActorFilter.parameter_name: obj.actor}), obj.actor)

    @admin.display(description="occurred", ordering="occurred_at")
    def occurred(self, obj: AuditEntry) -> SafeString | str:
        return local_time(obj.occurred_at)

    @admin.display(description="hash")
    def short_hash(self, obj: AuditEntry) -> str:
        return obj.hash[:12]

    @admin.display(description="payload")
    def payload_pretty(self, obj: AuditEntry) -> str:
        return format_html("<pre class='sw-payload'>{}</pre>", canonical(obj.payload))
