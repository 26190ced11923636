from django.apps import AppConfig
from django.conf import settings

BROKER_READER = "integrations.broker"


class IntegrationsConfig(AppConfig):
    """Integration: every published event also goes to an external AMQP broker (docs/architecture.md)."""

    name = "integrations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        if settings.INTEGRATION_BROKER_URL:
            track_events_for_broker()


def track_events_for_broker():
    """Subscribe the position reader that publishes every contract event to the broker, in order.

    It starts from the head at its first run: turning the broker on publishes what happens from
    then on, not years of history. Its checkpoint stays, so a broker turned off and on again (or
    a relay that was down) resumes where it stopped.
    """
    from domain_events.bus import event_bus
    from domain_events.events import published_event_types
    from integrations.handlers import publish_events_to_broker

    return event_bus.track(
        published_event_types(),
        publish_events_to_broker,
        name=BROKER_READER,
        batch_size=settings.INTEGRATION_BROKER_BATCH_SIZE,
        start="now",
        retry_schedule=settings.INTEGRATION_BROKER_RETRY_SCHEDULE,
    )
