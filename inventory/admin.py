"""The catalog and stock in the admin: staff see and change only their own bookstore's rows.

Stock counters are read-only here; stock changes through the "Restock" action, which calls the
restock service so that `inventory.stock_adjusted` is published like from the API.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import F, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from core.errors import ApplicationError
from inventory.models import Product, Reservation, ReservationLine
from inventory.services import MAX_STOCK_CHANGE, product_create, product_restock, product_update
from tenants.scoping import TenantScopedAdmin


class AvailabilityFilter(admin.SimpleListFilter):
    title = "availability"
    parameter_name = "availability"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("in_stock", "In stock"), ("sold_out", "Sold out")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Product]) -> QuerySet[Product]:
        if self.value() == "in_stock":
            return queryset.filter(on_hand__gt=F("reserved"))
        if self.value() == "sold_out":
            return queryset.filter(on_hand__lte=F("reserved"))
        return queryset


class ProductAdminForm(forms.ModelForm):
    """Checks the sku against the bookstore's catalog, which the form alone cannot see for staff
    (their tenant is not a field of the form)."""

    staff_tenant_id = None  # set per request by `ProductAdmin.get_form`

    class Meta:
        model = Product
        fields = ["tenant", "sku", "title", "price"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        sku = cleaned.get("sku")
        tenant = cleaned.get("tenant")
        tenant_id = tenant.pk if tenant is not None else self.staff_tenant_id
        adding = self.instance._state.adding
        if adding and sku and tenant_id and Product.objects.filter(tenant_id=tenant_id, sku=sku).exists():
            self.add_error("sku", f"A product with SKU {sku!r} already exists.")
        return cleaned


class RestockForm(forms.Form):
    quantity = forms.IntegerField(min_value=1, max_value=MAX_STOCK_CHANGE, help_text="Units to add to each.")


@admin.register(Product)
class ProductAdmin(TenantScopedAdmin):
    form = ProductAdminForm
    list_display = ["sku", "title", "price", "on_hand", "reserved", "available", "updated_at"]
    list_display_links = ["sku"]
    list_editable = ["price"]
    list_filter = [AvailabilityFilter]
    search_fields = ["sku", "title"]
    readonly_fields = ["on_hand", "reserved", "available", "created_at", "updated_at"]
    actions = ["restock"]

    def get_list_display(self, request: HttpRequest) -> list[str]:
        if request.user.is_superuser:
            return [*self.list_display, "tenant"]
        return self.list_display

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        # A tenant filter would list every bookstore's name: superusers only.
        if request.user.is_superuser:
            return [*self.list_filter, "tenant"]
        return self.list_filter

    def get_list_select_related(self, request: HttpRequest) -> list[str] | bool:
        return ["tenant"] if request.user.is_superuser else False

    def get_fields(self, request: HttpRequest, obj: Product | None = None) -> list[str]:
        fields = ["sku", "title", "price", "on_hand", "reserved", "available", "created_at", "updated_at"]
        return ["tenant", *fields] if request.user.is_superuser else fields

    def get_readonly_fields(self, request: HttpRequest, obj: Product | None = None) -> list[str]:
        if obj is not None:
            # Orders and events name products by sku; it does not change once created.
            return ["tenant", "sku", *self.readonly_fields]
        return self.readonly_fields

    def get_form(self, request: HttpRequest, obj: Product | None = None, change: bool = False, **kwargs: Any):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"staff_tenant_id": request.user.tenant_id})

    @admin.display(description="available", ordering=F("on_hand") - F("reserved"))
    def available(self, product: Product) -> int:
        return product.available

    def save_model(self, request: HttpRequest, obj: Product, form: forms.ModelForm, change: bool) -> None:
        """Through the services, like every other write to the catalog."""
        if change:
            product_update(product=obj, title=obj.title, price=obj.price)
            return
        tenant = obj.tenant if request.user.is_superuser else request.user.tenant
        created = product_create(tenant=tenant, sku=obj.sku, title=obj.title, price=obj.price)
        obj.pk = created.pk
        obj.refresh_from_db()

    @admin.action(description="Restock selected products")
    def restock(self, request: HttpRequest, queryset: QuerySet[Product]) -> TemplateResponse | None:
        """Ask for a quantity, then add it to each selected product through `product_restock`."""
        form = RestockForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            quantity = form.cleaned_data["quantity"]
            restocked = []
            for product in queryset:
                try:
                    product_restock(product=product, quantity=quantity)
                except ApplicationError as exc:
                    self.message_user(request, exc.message, messages.ERROR)
                else:
                    restocked.append(product.sku)
            if restocked:
                self.message_user(
                    request, f"Added {quantity} units to {len(restocked)} product(s): {', '.join(restocked)}."
                )
            return None
        return TemplateResponse(
            request,
            "admin/inventory/product/restock.html",
            {
                **self.admin_site.each_context(request),
                "title": "Restock products",
                "opts": self.model._meta,
                "products": queryset,
                "selected": queryset,
                "action": "restock",
                "submit": "Restock",
                "form": form,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            },
        )


class ReservationLineInline(admin.TabularInline):
    model = ReservationLine
    fields = ["product", "quantity"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Reservation | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Reservation | None = None) -> bool:
        return False


@admin.register(Reservation)
class ReservationAdmin(TenantScopedAdmin):
    """Read-only: reservations change only as their orders' events arrive."""

    list_display = ["order_id", "status", "created_at", "updated_at"]
    list_filter = ["status"]
    search_fields = ["=order_id"]
    fields = ["order_id", "status", "created_at", "updated_at"]
    readonly_fields = fields
    inlines = [ReservationLineInline]
    date_hierarchy = "created_at"

    def get_list_display(self, request: HttpRequest) -> list[str]:
        if request.user.is_superuser:
            return [*self.list_display, "tenant"]
        return self.list_display

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        if request.user.is_superuser:
            return [*self.list_filter, "tenant"]
        return self.list_filter

    def get_fields(self, request: HttpRequest, obj: Reservation | None = None) -> list[str]:
        return ["tenant", *self.fields] if request.user.is_superuser else self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Reservation | None = None) -> list[str]:
        return self.get_fields(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Reservation | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Reservation | None = None) -> bool:
        return False
