"""Payments in the admin, read-only: staff see their bookstore's payments; operators the provider's ledger.

Payment tokens are never shown in full.
"""

from uuid import UUID

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.safestring import SafeString

from payments.models import Payment, SimulatedCharge
from payments.selectors import payment_get_for_order
from staff_admin.columns import (
    ListColumns,
    TenantColumnForOperators,
    first_line,
    id_search,
    local_time,
    money,
    short_id,
)
from staff_admin.site import panel
from tenants.scoping import ReadOnlyAdminMixin, TenantScopedAdmin


@admin.register(Payment)
class PaymentAdmin(ListColumns, TenantColumnForOperators, ReadOnlyAdminMixin, TenantScopedAdmin):
    list_display = ["payment", "order", "amount_with_currency", "status", "provider_reference", "created"]
    list_filter = ["status", "created_at"]
    search_fields = ["=provider_reference", "=refund_reference"]
    search_help_text = "An order id (or its first 8 characters), or a provider's reference."
    ordering = ["-created_at"]
    fields = [
        "id",
        "order_id",
        "amount",
        "currency",
        "masked_token",
        "status",
        "provider_reference",
        "refund_reference",
        "failure_reason",
        "created_at",
        "updated_at",
        "captured_at",
        "refunded_at",
    ]
    readonly_fields = fields
    show_full_result_count = False

    @admin.display(description="payment token")
    def masked_token(self, obj: Payment) -> str:
        return obj.masked_token

    @admin.display(description="payment", ordering="id")
    def payment(self, obj: Payment) -> SafeString | str:
        return short_id(obj.pk)

    @admin.display(description="order")
    def order(self, obj: Payment) -> SafeString | str:
        return self.admin_site.aggregate_link("order_id", obj.order_id)

    @admin.display(description="amount", ordering="amount")
    def amount_with_currency(self, obj: Payment) -> SafeString | str:
        return money(obj.amount, obj.currency)

    def get_search_results(self, request, queryset, search_term):
        """By the order's id (whole, or its first 8 characters) or by a provider's reference."""
        by_id = id_search("order_id", search_term)
        if by_id is not None:
            return queryset.filter(by_id), False
        return super().get_search_results(request, queryset, search_term)


@admin.site.page_panel("order", order=10)
def order_payment(request: HttpRequest, *, tenant_id: UUID, aggregate_id: UUID) -> SafeString:
    """The order's payment: status, amount, the provider's references, why it failed."""
    payment = payment_get_for_order(tenant_id=tenant_id, order_id=aggregate_id)
    if payment is None:
        return panel(panel_id="payment", title="Payment", empty="No payment registered (yet).")
    facts = [
        ("status", payment.status, payment.status == Payment.Status.DECLINED),
        ("amount", money(payment.amount, payment.currency), False),
        ("provider reference", payment.provider_reference or "-", False),
    ]
    if payment.refund_reference:
        facts.append(("refund reference", payment.refund_reference, False))
    if payment.failure_reason:
        facts.append(("failure", first_line(payment.failure_reason), True))
    if payment.captured_at:
        facts.append(("captured", local_time(payment.captured_at), False))
    return panel(
        panel_id="payment",
        title="Payment",
        facts=facts,
        link=(reverse("admin:payments_payment_change", args=[payment.pk]), "The payment"),
    )


@admin.register(SimulatedCharge)
class SimulatedChargeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The simulated provider's ledger spans every bookstore, so only operators (superusers) see it."""

    list_display = ["reference", "kind", "result", "amount", "currency", "requests", "created_at"]
    list_filter = ["kind", "result", "created_at"]
    search_fields = ["=idempotency_key", "reference", "refunded_reference"]
    ordering = ["-created_at"]
    fields = [
        "idempotency_key",
        "kind",
        "result",
        "message",
        "amount",
        "currency",
        "masked_token",
        "reference",
        "refunded_reference",
        "requests",
        "created_at",
    ]
    readonly_fields = fields

    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    @admin.display(description="token")
    def masked_token(self, obj: SimulatedCharge) -> str:
        return obj.masked_token
