from django.apps import AppConfig


class OrdersConfig(AppConfig):
    """Orders: placing, confirming, cancelling, fulfilling and delivering customers' orders."""

    name = "orders"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from domain_events.bus import event_bus
        from domain_events.events import InventoryReservationFailed, PaymentCaptured, PaymentFailed
        from domain_events.queries import ApplyShipmentNotice
        from orders import handlers, services

        event_bus.answer(ApplyShipmentNotice, services.shipment_notice_apply)

        event_bus.subscribe(PaymentCaptured, handlers.confirm_order, mode="on_commit", name="orders.confirm_order")
        event_bus.subscribe(
            InventoryReservationFailed,
            handlers.cancel_order_out_of_stock,
            mode="on_commit",
            name="orders.cancel_order_out_of_stock",
        )
        event_bus.subscribe(
            PaymentFailed,
            handlers.cancel_order_payment_declined,
            mode="on_commit",
            name="orders.cancel_order_payment_declined",
        )
