from django.apps import AppConfig


class DomainEventsConfig(AppConfig):
    name = "domain_events"
    verbose_name = "Domain events"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from core.fields import register_reencryptor
        from domain_events import checks, upcasters  # noqa: F401  (registers the checks and upcaster chains)
        from domain_events.private import stored_events_reencrypt

        register_reencryptor("stored events' private fields", stored_events_reencrypt)
