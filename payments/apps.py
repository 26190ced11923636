from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    """Payments: registers, captures, voids and refunds each order's payment through a gateway."""

    name = "payments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from domain_events.bus import event_bus
        from domain_events.events import InventoryReserved, OrderCancelled, OrderPlaced
        from payments import handlers

        event_bus.subscribe(
            OrderPlaced,
            handlers.register_payment_for_order,
            mode="on_commit",
            name="payments.register_payment_for_order",
        )
        # Capture and refund talk to the provider: they run in workers, off the request path, and
        # outside the executor's transaction (`atomic=False`), so no row stays locked while the
        # provider answers; the services claim and record in short transactions of their own.
        event_bus.subscribe(
            InventoryReserved,
            handlers.capture_payment_for_order,
            mode="celery",
            name="payments.capture_payment_for_order",
            queue="payments",
            atomic=False,
        )
        event_bus.subscribe(
            OrderCancelled,
            handlers.void_or_refund_cancelled_order,
            mode="celery",
            name="payments.void_or_refund_cancelled_order",
            queue="payments",
            atomic=False,
        )
