from django.apps import AppConfig


class ProbeConfig(AppConfig):
    """Handlers and events that exist only in the test settings, to drive the backbone."""

    name = "domain_events.tests.probe"
    label = "probe"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from domain_events.tests.probe import handlers

        handlers.subscribe_all()
