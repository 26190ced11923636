from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from domain_events.bus import event_bus
        from domain_events.events import published_event_types
        from webhooks import handlers

        event_bus.subscribe(
            published_event_types(),
            handlers.queue_webhook_deliveries,
            mode="on_commit",
            name="webhooks.queue_webhook_deliveries",
        )
