"""The catalog and stock in the admin: staff see and change only their own bookstore's rows.

Stock counters are read-only here; stock changes through the "Restock" action, which calls the
restock service so that `inventory.stock_adjusted` is published like from the API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import F, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from core.errors import ApplicationError
from inventory.models import Product, Reservation, ReservationLine
from inventory.selectors import LOW_STOCK, products_low_on_stock, reservation_for_order
from inventory.services import MAX_STOCK_CHANGE, product_create, product_restock, product_update
from staff_admin.columns import ListColumns, TenantForOperators, id_search, short_id
from staff_admin.site import panel
from tenants.scoping import ReadOnlyAdminMixin, TenantScopedAdmin

if TYPE_CHECKING:
    from tenants.models import Tenant

# Events whose aggregate is a product (stock adjustments) link to its page.
admin.site.link_aggregate("product_id", "admin:inventory_product_change")


class AvailabilityFilter(admin.SimpleListFilter):
    title = "availability"
    parameter_name = "availability"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("in_stock", "In stock"), ("low", f"Low (at most {LOW_STOCK} available)"), ("sold_out", "Sold out")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Product]) -> QuerySet[Product]:
        if self.value() == "low":
            return queryset.filter(on_hand__lte=F("reserved") + LOW_STOCK)
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
class ProductAdmin(ListColumns, TenantForOperators, TenantScopedAdmin):
    form = ProductAdminForm
    list_display = ["sku", "title", "price", "on_hand", "reserved", "available", "updated"]
    list_display_links = ["sku"]
    list_editable = ["price"]
    list_filter = [AvailabilityFilter]
    search_fields = ["sku", "title"]
    fields = ["sku", "title", "price", "on_hand", "reserved", "available", "created_at", "updated_at"]
    readonly_fields = ["on_hand", "reserved", "available", "created_at", "updated_at"]
    actions = ["restock"]

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

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Product], search_term: str):
        """By sku or title, or by the product's id (whole, or its first 8 characters as events show it)."""
        by_id = id_search("id", search_term)
        if by_id is not None:
            return queryset.filter(by_id), False
        return super().get_search_results(request, queryset, search_term)

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

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReservationLine]:
        # Each line shows its product: one join, not one query per line.
        return super().get_queryset(request).select_related("product")


@admin.register(Reservation)
class ReservationAdmin(ListColumns, ReadOnlyAdminMixin, TenantForOperators, TenantScopedAdmin):
    """Read-only: reservations change only as their orders' events arrive."""

    list_display = ["reservation", "order", "status", "created", "updated"]
    list_filter = ["status", "created_at"]
    search_fields = ["=order_id"]
    fields = ["order_id", "status", "created_at", "updated_at"]
    readonly_fields = fields
    inlines = [ReservationLineInline]

    @admin.display(description="reservation", ordering="id")
    def reservation(self, obj: Reservation) -> SafeString | str:
        return short_id(obj.pk)

    @admin.display(description="order")
    def order(self, obj: Reservation) -> SafeString | str:
        return self.admin_site.aggregate_link("order_id", obj.order_id)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Reservation], search_term: str):
        """By the order's id, whole or its first 8 characters."""
        by_id = id_search("order_id", search_term)
        if by_id is not None:
            return queryset.filter(by_id), False
        return queryset.none() if search_term.strip() else queryset, False

    def get_readonly_fields(self, request: HttpRequest, obj: Reservation | None = None) -> list[str]:
        return self.get_fields(request, obj)


# --- the dashboard and the order page -----------------------------------------------------------


@admin.site.dashboard_panel(order=30)
def low_stock(request: HttpRequest, tenant: Tenant) -> SafeString:
    """The products that are about to sell out, fewest available first."""
    products = products_low_on_stock(tenant_id=tenant.id)
    return panel(
        panel_id="low-stock",
        title=f"Low on stock (at most {LOW_STOCK} available)",
        headers=[("Product", False), ("Available", True)],
        rows=[
            [
                format_html(
                    '<a href="{}" title="{}">{}</a>',
                    reverse("admin:inventory_product_change", args=[p.pk]),
                    p.title,
                    p.sku,
                ),
                format_html('<span class="money">{}</span>', p.available),
            ]
            for p in products
        ],
        empty="Every product has more than that.",
        link=(reverse("admin:inventory_product_changelist") + "?availability=low", "All products low on stock"),
    )


@admin.site.page_panel("order", order=20)
def order_reservation(request: HttpRequest, *, tenant_id: UUID, aggregate_id: UUID) -> SafeString:
    """The stock held for the order: its status and what each line holds."""
    reservation = reservation_for_order(tenant_id=tenant_id, order_id=aggregate_id)
    if reservation is None:
        return panel(panel_id="reservation", title="Reservation", empty="No stock reserved (yet).")
    return panel(
        panel_id="reservation",
        title=f"Reservation: {reservation.status}",
        headers=[("Product", False), ("Units", True)],
        rows=[
            [
                format_html(
                    '<a href="{}">{}</a>',
                    reverse("admin:inventory_product_change", args=[line.product_id]),
                    line.product.sku,
                ),
                line.quantity,
            ]
            for line in reservation.lines.all()
        ],
        empty="No line held (cancelled before its stock was reserved).",
        link=(reverse("admin:inventory_reservation_change", args=[reservation.pk]), "The reservation"),
    )
