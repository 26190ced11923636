"""Payments in the admin, read-only: staff see their bookstore's payments; operators the provider's ledger.

Payment tokens are never shown in full.
"""

from django.contrib import admin

from payments.models import Payment, SimulatedCharge
from tenants.scoping import TenantScopedAdmin


class ReadOnlyMixin:
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Payment)
class PaymentAdmin(ReadOnlyMixin, TenantScopedAdmin):
    list_display = ["order_id", "amount", "currency", "status", "provider_reference", "created_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["=order_id", "provider_reference", "refund_reference"]
    date_hierarchy = "created_at"
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


@admin.register(SimulatedCharge)
class SimulatedChargeAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """The simulated provider's ledger spans every bookstore, so only operators (superusers) see it."""

    list_display = ["reference", "kind", "result", "amount", "currency", "requests", "created_at"]
    list_filter = ["kind", "result", "created_at"]
    search_fields = ["=idempotency_key", "reference", "refunded_reference"]
    date_hierarchy = "created_at"
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
