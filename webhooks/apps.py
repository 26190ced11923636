from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from domain_events.bus import event_bus
        from domain_events.registry import registry
        from webhooks import handlers

        # The contract's event types (CONTRACT §5), all declared in `domain_events.events`; events
        # declared elsewhere (test probes) are not part of what integrators can subscribe to.
        public = [cls for cls in registry.types().values() if cls.__module__ == "domain_events.events"]
        event_bus.subscribe(
            public, handlers.queue_webhook_deliveries, mode="on_commit", name="webhooks.queue_webhook_deliveries"
        )
