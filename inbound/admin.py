"""The inbox in the admin: every notice the distributor sent, parked ones with their reason; lost
shipments as staff tasks, on the dashboard until marked looked at; the notices of an order on its page.

Staff see their bookstore's rows only; a message that named no bookstore we know is an operator's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from inbound.models import InboxMessage, LostShipment
from inbound.selectors import inbox_for_order, lost_shipments_open
from inbound.services import lost_shipment_resolve
from staff_admin.columns import TenantColumnForOperators, first_line, local_time
from staff_admin.site import panel
from tenants.scoping import ReadOnlyAdminMixin, TenantScopedAdmin

if TYPE_CHECKING:
    from tenants.models import Tenant


def order_link(order_id: UUID | None) -> SafeString | str:
    return admin.site.aggregate_link("order_id", order_id) if order_id else "—"


@admin.register(InboxMessage)
class InboxMessageAdmin(TenantColumnForOperators, ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ["message", "received", "kind", "order", "status", "why"]
    list_filter = ["status", "kind", "source"]
    search_fields = ["=message_id", "=order_id", "=tracking_number"]
    search_help_text = "A message id, an order's id or a tracking number."
    ordering = ["-received_at"]
    show_full_result_count = False
    readonly_fields = [
        "message_id",
        "source",
        "received_at",
        "kind",
        "order_id",
        "tracking_number",
        "occurred_at",
        "status",
        "reason",
        "events",
        "body",
    ]
    fields = readonly_fields

    @admin.display(description="message", ordering="message_id")
    def message(self, obj: InboxMessage) -> SafeString:
        return format_html("{}<br><small>{}</small>", first_line(obj.message_id, limit=40), obj.source)

    @admin.display(description="received", ordering="received_at")
    def received(self, obj: InboxMessage) -> SafeString | str:
        return local_time(obj.received_at)

    @admin.display(description="order")
    def order(self, obj: InboxMessage) -> SafeString | str:
        return order_link(obj.order_id)

    @admin.display(description="reason · events")
    def why(self, obj: InboxMessage) -> SafeString | str:
        return first_line(obj.reason or ", ".join(obj.events), limit=70)


@admin.register(LostShipment)
class LostShipmentAdmin(TenantColumnForOperators, ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ["shipment", "order", "reported", "looked_at"]
    list_filter = [("resolved_at", admin.EmptyFieldListFilter)]
    search_fields = ["=order_id", "=tracking_number"]
    ordering = ["-reported_at"]
    readonly_fields = ["order_id", "tracking_number", "reported_at", "resolved_at", "resolved_by"]
    fields = readonly_fields
    actions = ["mark_looked_at"]

    @admin.display(description="tracking number", ordering="tracking_number")
    def shipment(self, obj: LostShipment) -> str:
        return obj.tracking_number

    @admin.display(description="order")
    def order(self, obj: LostShipment) -> SafeString | str:
        return order_link(obj.order_id)

    @admin.display(description="reported lost", ordering="reported_at")
    def reported(self, obj: LostShipment) -> SafeString | str:
        return local_time(obj.reported_at)

    @admin.display(description="looked at", ordering="resolved_at")
    def looked_at(self, obj: LostShipment) -> SafeString | str:
        if obj.resolved_at is None:
            return "open"
        return format_html("{} by {}", local_time(obj.resolved_at), obj.resolved_by)

    def has_change_permission(self, request, obj=None) -> bool:
        # The action changes only what the task says about itself, through the service.
        return request.user.is_staff

    @admin.action(description="Mark the selected lost shipments as looked at")
    def mark_looked_at(self, request: HttpRequest, queryset: QuerySet[LostShipment]) -> None:
        for lost in queryset:
            lost_shipment_resolve(lost=lost, by=request.user.get_username())
        self.message_user(request, f"Marked {queryset.count()} lost shipment(s) as looked at.")


# --- the dashboard and the order page -----------------------------------------------------------


@admin.site.dashboard_panel(order=45)
def lost_shipments(request: HttpRequest, tenant: Tenant) -> SafeString:
    """The shipments the distributor reported lost that nobody has looked at yet: a task each."""
    open_tasks, parked = lost_shipments_open(tenant_id=tenant.id)
    changelist = reverse("admin:inbound_lostshipment_changelist")
    inbox = reverse("admin:inbound_inboxmessage_changelist")
    return panel(
        panel_id="lost-shipments",
        title="Distributor",
        facts=[
            (
                format_html('<a href="{}?resolved_at__isempty=1">Lost shipments to look at</a>', changelist),
                len(open_tasks),
                bool(open_tasks),
            ),
            (format_html('<a href="{}?status__exact=parked">Parked notices</a>', inbox), parked, parked > 0),
        ],
        headers=[("Order", False), ("Tracking number", False), ("Reported lost", False)] if open_tasks else None,
        rows=[[order_link(lost.order_id), lost.tracking_number, local_time(lost.reported_at)] for lost in open_tasks],
        empty="No lost shipment to look at.",
    )


@admin.site.page_panel("order", order=35)
def order_shipment_notices(request: HttpRequest, *, tenant_id: UUID, aggregate_id: UUID) -> SafeString:
    """The distributor's notices about the order: what each did, or why it was parked."""
    messages = inbox_for_order(tenant_id=tenant_id, order_id=aggregate_id)
    return panel(
        panel_id="shipment-notices",
        title="Distributor's notices",
        headers=[("Received", False), ("Notice", False), ("Status", False), ("Reason · events", False)],
        rows=[
            [
                local_time(m.received_at),
                format_html('<a href="{}">{}</a>', reverse("admin:inbound_inboxmessage_change", args=[m.pk]), m.kind),
                m.status,
                first_line(m.reason or ", ".join(m.events), limit=70),
            ]
            for m in messages
        ],
        empty="No notice from the distributor for this order.",
        wide=True,
    )
