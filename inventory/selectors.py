"""Reads of the catalog and its reservations.

Querysets returned here are not scoped to a tenant: the API and the admin narrow them with
`tenants.scoping` (the one scoping mechanism), and the functions that take a `tenant_id` filter by it.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from django.db import connection
from django.db.models import F, QuerySet

from domain_events.queries import ProductQuote
from inventory.models import Product, Reservation

_QUOTES = f"SELECT sku, title, price FROM {Product._meta.db_table} WHERE tenant_id = %s AND sku = ANY(%s)"  # noqa: S608


def product_list() -> QuerySet[Product]:
    """Every product with its tenant (for the currency), by sku."""
    return Product.objects.select_related("tenant").order_by("sku", "tenant_id")


LOW_STOCK = 5


def products_low_on_stock(*, tenant_id: UUID, threshold: int = LOW_STOCK, limit: int = 8) -> list[Product]:
    """The tenant's products with at most `threshold` units available, fewest first."""
    available = F("on_hand") - F("reserved")
    return list(
        Product.objects.filter(tenant_id=tenant_id)
        .alias(units_available=available)
        .filter(units_available__lte=threshold)
        .order_by("units_available", "sku")[:limit]
    )


def product_get(*, products: QuerySet[Product], sku: str) -> Product | None:
    """The product with `sku` among `products` (a scoped queryset), or None."""
    return products.filter(sku=sku).first()


def product_quotes(*, tenant_id: UUID, skus: Iterable[str]) -> dict[str, ProductQuote]:
    """The current title and price of each of `skus` that `tenant_id`'s catalog knows."""
    if connection.vendor == "postgresql":
        # Asked on every order placed: one statement written out, not an ORM query compiled each time.
        with connection.cursor() as cursor:
            cursor.execute(_QUOTES, [tenant_id, list(set(skus))])
            rows = cursor.fetchall()
    else:
        rows = Product.objects.filter(tenant_id=tenant_id, sku__in=set(skus)).values_list("sku", "title", "price")
    return {sku: ProductQuote(sku=sku, title=title, unit_price=price) for sku, title, price in rows}


def reservation_for_order(*, tenant_id: UUID, order_id: UUID) -> Reservation | None:
    """The order's reservation (any status), with its lines and their products."""
    return Reservation.objects.filter(tenant_id=tenant_id, order_id=order_id).prefetch_related("lines__product").first()
