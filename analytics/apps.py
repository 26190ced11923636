from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    """The read side: projections of the events into dashboard figures, the events feed, timelines."""

    name = "analytics"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from analytics.projections import PROJECTIONS
        from domain_events.bus import event_bus

        for projection in PROJECTIONS.values():
            event_bus.track(
                projection.event_types, projection.handler, name=projection.name, batch_size=projection.batch_size
            )
