"""The orders admin: staff read their tenant's orders and fulfill or cancel them through the services.

Orders are read-only here; their state changes only through the Fulfil and Cancel buttons of the
order's page and the list's actions, which call the same services as the API, so every change
records its event. The order's page also gathers what other modules know of it (its payment,
reservation, e-mails and webhook deliveries: their `page_panel`s) and its timeline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.safestring import SafeString

from core.errors import ApplicationError
from domain_events.admin_lists import LargeTablePaginator
from domain_events.selectors import aggregate_timeline
from orders.models import TRACKING_NUMBER_MAX_LENGTH, Order, OrderItem
from orders.services import order_cancel, order_fulfill
from staff_admin.columns import TenantColumnForOperators, id_search, local_time, money, short_id
from tenants.scoping import TenantScopedAdmin

# Events whose aggregate is an order (most of them) link to the order's page.
admin.site.link_aggregate("order_id", "admin:orders_order_change")


class OrderItemInline(admin.TabularInline):
    model = OrderItem
    fields = ["sku", "title", "quantity", "price"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False

    @admin.display(description="unit price")
    def price(self, item: OrderItem) -> SafeString | str:
        return money(item.unit_price, item.order.currency)

    def get_queryset(self, request: HttpRequest) -> QuerySet[OrderItem]:
        return super().get_queryset(request).select_related("order")


class TrackingNumberForm(forms.Form):
    tracking_number = forms.CharField(max_length=TRACKING_NUMBER_MAX_LENGTH, strip=True)


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
class OrderAdmin(TenantColumnForOperators, TenantScopedAdmin):
    list_display = ["order", "customer", "status_and_reason", "total", "tracking_number", "created"]
    list_display_links = ["order"]
    list_filter = ["status", "cancellation_reason", "created_at"]
    search_fields = ["customer__username"]
    search_help_text = "An order id (whole, or its first 8 characters) or a customer's username."
    list_select_related = ["customer", "tenant"]
    # Orders grow without bound: no full count; newest first along an index (`order_created`, per
    # tenant `order_tenant_created`).
    paginator = LargeTablePaginator
    show_full_result_count = False
    fields = [
        "id",
        "tenant",
        "customer",
        "status",
        "cancellation_reason",
        "total",
        "tracking_number",
        "shipped_at",
        "delivered_at",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields
    inlines = [OrderItemInline]
    actions = ["fulfill_orders", "cancel_orders"]
    change_form_template = "admin/orders/order/order_page.html"

    @admin.display(description="order", ordering="created_at")
    def order(self, obj: Order) -> SafeString | str:
        return short_id(obj.pk)

    @admin.display(description="status", ordering="status")
    def status_and_reason(self, obj: Order) -> str:
        if obj.cancellation_reason:
            return f"{obj.status} ({obj.get_cancellation_reason_display().lower()})"
        return obj.status

    @admin.display(description="total", ordering="total_amount")
    def total(self, obj: Order) -> SafeString | str:
        return money(obj.total_amount, obj.currency)

    @admin.display(description="placed", ordering="created_at")
    def created(self, obj: Order) -> SafeString | str:
        return local_time(obj.created_at)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Order], search_term: str):
        """By the order's id (whole, or its first 8 characters as the list shows it: a range of the
        primary key's index) or by the customer's username."""
        by_id = id_search("id", search_term)
        if by_id is not None:
            return queryset.filter(by_id), False
        return super().get_search_results(request, queryset, search_term)

    # --- the order's page ----------------------------------------------------------------------

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        order = self.get_object(request, object_id)
        extra: dict[str, Any] = {}
        # Django refuses the page itself (a missing order, no right to view it); nothing to gather then.
        if order is not None and self.has_view_or_change_permission(request, order):
            extra = {
                "panels": self.admin_site.page_panels(
                    "order", request, tenant_id=order.tenant_id, aggregate_id=order.pk
                ),
                "timeline": render_to_string(
                    "domain_events/timeline.html",
                    {
                        "events": aggregate_timeline(tenant_id=order.tenant_id, aggregate_id=order.pk),
                        "back": request.get_full_path(),
                    },
                    request=request,
                ),
                "may_act": self.has_fulfill_permission(request),
            }
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    def get_urls(self):
        return [
            path("<uuid:order_id>/fulfil/", self.admin_site.admin_view(self.fulfil_view), name="orders_order_fulfil"),
            path("<uuid:order_id>/cancel/", self.admin_site.admin_view(self.cancel_view), name="orders_order_cancel"),
            *super().get_urls(),
        ]

    def _order_for_action(self, request: HttpRequest, order_id: UUID) -> Order:
        if not self.has_fulfill_permission(request):
            raise PermissionDenied
        order = self.get_queryset(request).filter(pk=order_id).first()
        if order is None:
            raise Http404("No such order.")
        return order

    def _back_to(self, order: Order) -> HttpResponseRedirect:
        return HttpResponseRedirect(
            reverse("admin:orders_order_change", args=[order.pk], current_app=self.admin_site.name)
        )

    def fulfil_view(self, request: HttpRequest, order_id: UUID) -> HttpResponse:
        """Ask for the tracking number, then fulfil the order; refuse, saying why, unless it is confirmed."""
        return self._order_button(
            request,
            order_id,
            action="fulfil",
            title="Fulfil order",
            submit="Fulfil",
            form_class=TrackingNumberForm,
            refusal=lambda order: (
                None
                if order.status == Order.Status.CONFIRMED
                else f"cannot be fulfilled: only a confirmed order can be, and this one is {order.status}."
            ),
            perform=lambda order, data: order_fulfill(order=order, tracking_number=data["tracking_number"]),
            done=lambda data: f"fulfilled with tracking number {data['tracking_number']}.",
            failed="was not fulfilled",
        )

    def cancel_view(self, request: HttpRequest, order_id: UUID) -> HttpResponse:
        """Ask to confirm, then cancel the order at the customer's request; refuse, saying why, once
        it is fulfilled, delivered or already cancelled."""
        return self._order_button(
            request,
            order_id,
            action="cancel",
            title="Cancel order",
            submit="Cancel the order",
            form_class=None,
            refusal=lambda order: (
                None
                if order.is_cancellable
                else f"cannot be cancelled: it is {order.status}"
                + (" and already on its way to the customer." if order.status == Order.Status.FULFILLED else ".")
            ),
            perform=lambda order, data: order_cancel(
                order=order, reason=Order.CancellationReason.CUSTOMER_REQUEST, by=request.user
            ),
            done=lambda data: "cancelled: its stock is released and its payment voided or refunded.",
            failed="was not cancelled",
        )

    def _order_button(
        self,
        request: HttpRequest,
        order_id: UUID,
        *,
        action: str,
        title: str,
        submit: str,
        form_class: type[forms.Form] | None,
        refusal: Callable[[Order], str | None],
        perform: Callable[[Order, dict[str, Any]], object],
        done: Callable[[dict[str, Any]], str],
        failed: str,
    ) -> HttpResponse:
        """A button of the order's page: refuse, saying why, an order it does not apply to; else ask
        (the form's fields, or only to confirm), act through the service and say how it went."""
        order = self._order_for_action(request, order_id)
        name = f"Order {str(order.pk)[:8]}"
        reason = refusal(order)
        if reason is not None:
            self.message_user(request, f"{name} {reason}", messages.ERROR)
            return self._back_to(order)
        form = form_class(request.POST if request.method == "POST" else None) if form_class else None
        if not (form.is_valid() if form is not None else request.method == "POST"):
            return self._order_form(request, order, form, title=title, submit=submit, action=action)
        data = form.cleaned_data if form is not None else {}
        try:
            perform(order, data)
        except ApplicationError as exc:
            self.message_user(request, f"{name} {failed}: {exc.message}", messages.ERROR)
        else:
            self.message_user(request, f"{name} {done(data)}", messages.SUCCESS)
        return self._back_to(order)

    def _order_form(
        self, request: HttpRequest, order: Order, form: forms.Form | None, *, title: str, submit: str, action: str
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": f"{title} {str(order.pk)[:8]}",
            "opts": self.model._meta,
            "order": order,
            "form": form,
            "submit": submit,
            "action": action,
        }
        return TemplateResponse(request, "admin/orders/order/order_action.html", context)

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
