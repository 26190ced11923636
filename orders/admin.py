"""The orders admin: staff read their tenant's orders and fulfill or cancel them through the services.

Orders are read-only here; their state changes only through the actions, which call the same
services as the API, so every change records its event.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.template.response import TemplateResponse

from core.errors import ApplicationError
from domain_events.selectors import aggregate_timeline
from orders.models import TRACKING_NUMBER_MAX_LENGTH, Order, OrderItem
from orders.services import order_cancel, order_fulfill
from tenants.scoping import TenantScopedAdmin


class OrderItemInline(admin.TabularInline):
    model = OrderItem
    fields = ["sku", "title", "quantity", "unit_price"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False


class FulfillForm(forms.Form):
    """One tracking number per confirmed order to ship."""

    def __init__(self, *args, orders: list[Order], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.orders = orders
        for order in orders:
            self.fields[self.field_name(order)] = forms.CharField(
                label=f"Tracking number of {order.pk}", max_length=TRACKING_NUMBER_MAX_LENGTH, strip=True
            )

    @staticmethod
    def field_name(order: Order) -> str:
        return f"tracking_number_{order.pk}"

    def rows(self) -> list[tuple[Order, forms.BoundField]]:
        return [(order, self[self.field_name(order)]) for order in self.orders]


@admin.register(Order)
class OrderAdmin(TenantScopedAdmin):
    list_display = [
        "id",
        "customer",
        "status",
        "cancellation_reason",
        "total_amount",
        "currency",
        "tracking_number",
        "created_at",
    ]
    list_filter = ["status", "cancellation_reason", "created_at"]
    search_fields = ["id", "customer__username"]
    list_select_related = ["customer", "tenant"]
    fields = [
        "id",
        "tenant",
        "customer",
        "status",
        "cancellation_reason",
        "total_amount",
        "currency",
        "tracking_number",
        "shipped_at",
        "created_at",
        "updated_at",
        "timeline",
    ]
    readonly_fields = fields
    inlines = [OrderItemInline]
    actions = ["fulfill_orders", "cancel_orders"]

    @admin.display(description="timeline (every event in position order, with each handler's delivery)")
    def timeline(self, obj: Order) -> str:
        return render_to_string(
            "domain_events/timeline.html",
            {"events": aggregate_timeline(tenant_id=obj.tenant_id, aggregate_id=obj.id)},
        )

    def get_list_display(self, request: HttpRequest) -> list[str]:
        if request.user.is_superuser:
            return [*self.list_display, "tenant"]
        return self.list_display

    def get_fields(self, request: HttpRequest, obj: Order | None = None) -> list[str]:
        if request.user.is_superuser:
            return self.fields
        return [f for f in self.fields if f != self.tenant_field]

    # Orders are placed through the API and change only through the actions below.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False

    def has_fulfill_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("orders.change_order")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("orders.change_order")

    @admin.action(description="Fulfill the selected orders", permissions=["fulfill"])
    def fulfill_orders(self, request: HttpRequest, queryset: QuerySet[Order]) -> TemplateResponse | None:
        """Ask for each confirmed order's tracking number, then fulfill them."""
        selected = list(queryset.select_related("customer"))
        orders = [o for o in selected if o.status == Order.Status.CONFIRMED]
        if "apply" not in request.POST:
            skipped = len(selected) - len(orders)
            if skipped:
                self.message_user(
                    request, f"{skipped} selected order(s) are not confirmed and cannot be fulfilled.", messages.WARNING
                )
            if not orders:
                return None
            return self._fulfill_form(request, FulfillForm(orders=orders))
        form = FulfillForm(request.POST, orders=orders)
        if not form.is_valid():
            return self._fulfill_form(request, form)
        fulfilled = 0
        for order in orders:
            try:
                order_fulfill(order=order, tracking_number=form.cleaned_data[form.field_name(order)])
            except ApplicationError as exc:
                self.message_user(request, f"Order {order.pk}: {exc.message}", messages.ERROR)
            else:
                fulfilled += 1
        if fulfilled:
            self.message_user(request, f"{fulfilled} order(s) fulfilled.", messages.SUCCESS)
        return None

    def _fulfill_form(self, request: HttpRequest, form: FulfillForm) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Fulfill orders",
            "opts": self.model._meta,
            "form": form,
            "rows": form.rows(),
            "selected": [order for order, _ in form.rows()],
            "action": "fulfill_orders",
            "submit": "Fulfill",
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/orders/order/fulfill.html", context)

    @admin.action(description="Cancel the selected orders (customer request)", permissions=["cancel"])
    def cancel_orders(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        """Cancel each selected order at the customer's request; fulfilled or cancelled ones are reported."""
        cancelled = 0
        for order in queryset:
            try:
                order_cancel(order=order, reason=Order.CancellationReason.CUSTOMER_REQUEST, by=request.user)
            except ApplicationError as exc:
                self.message_user(request, f"Order {order.pk}: {exc.message}", messages.WARNING)
            else:
                cancelled += 1
        if cancelled:
            self.message_user(request, f"{cancelled} order(s) cancelled.", messages.SUCCESS)
