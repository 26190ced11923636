from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from domain_events.bus import event_bus
        from domain_events.events import OrderCancelled, OrderConfirmed, OrderDelivered, OrderFulfilled, OrderPlaced
        from notifications import handlers, services

        event_bus.subscribe(
            OrderPlaced, handlers.remember_order_contact, mode="on_commit", name="notifications.remember_order_contact"
        )
        event_bus.subscribe(
            [OrderConfirmed, OrderCancelled, OrderFulfilled, OrderDelivered],
            handlers.email_customer_about_order,
            mode="celery",
            queue="email",
            atomic=False,
            name="notifications.email_customer_about_order",
            batch_scope=services.email_connection_shared,
        )
