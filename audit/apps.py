from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from audit.handlers import append_to_audit_trail
        from audit.selectors import READER
        from domain_events.bus import event_bus
        from domain_events.events import DomainEvent

        event_bus.track(DomainEvent, append_to_audit_trail, name=READER, batch_size=500)
