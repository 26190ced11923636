"""Inventory's reactions to order events, and its answer to the catalog query.

Thin: each calls one service. They are subscribed in `InventoryConfig.ready()`.
"""

from __future__ import annotations

from domain_events.events import OrderCancelled, OrderFulfilled, OrderPlaced
from domain_events.queries import ProductQuote, QuoteProducts
from inventory import selectors, services


def reserve_stock_for_order(event: OrderPlaced) -> None:
    """A new order: reserve all its lines or none (`inventory.reserved` / `inventory.reservation_failed`)."""
    services.stock_reserve_for_order(tenant_id=event.tenant_id, order_id=event.order_id, lines=event.lines)


def release_stock_for_cancelled_order(event: OrderCancelled) -> None:
    """A cancelled order gives its stock back, or leaves a tombstone if nothing was reserved yet."""
    services.stock_release_for_order(tenant_id=event.tenant_id, order_id=event.order_id)


def ship_stock_for_fulfilled_order(event: OrderFulfilled) -> None:
    """A fulfilled order's reserved units leave the shelf."""
    services.stock_ship_for_order(tenant_id=event.tenant_id, order_id=event.order_id)


def quote_products(query: QuoteProducts) -> dict[str, ProductQuote]:
    """Answer `QuoteProducts`: the catalog's title and price per known sku of the tenant."""
    return selectors.product_quotes(tenant_id=query.tenant_id, skus=query.skus)
