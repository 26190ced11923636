from django.apps import AppConfig


class InventoryConfig(AppConfig):
    """The catalog and its stock: reserves, releases and ships stock as orders move."""

    name = "inventory"
    verbose_name = "Catalog and stock"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from domain_events.bus import event_bus
        from domain_events.events import OrderCancelled, OrderFulfilled, OrderPlaced
        from domain_events.queries import QuoteProducts
        from inventory import handlers

        event_bus.subscribe(
            OrderPlaced, handlers.reserve_stock_for_order, mode="on_commit", name="inventory.reserve_stock_for_order"
        )
        event_bus.subscribe(
            OrderCancelled,
            handlers.release_stock_for_cancelled_order,
            mode="on_commit",
            name="inventory.release_stock_for_cancelled_order",
        )
        event_bus.subscribe(
            OrderFulfilled,
            handlers.ship_stock_for_fulfilled_order,
            mode="on_commit",
            name="inventory.ship_stock_for_fulfilled_order",
        )
        event_bus.answer(QuoteProducts, handlers.quote_products)
