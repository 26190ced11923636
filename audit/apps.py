from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from audit.handlers import append_to_audit_trail
        from audit.selectors import READER, audit_chain_heads
        from domain_events.bus import event_bus
        from domain_events.events import DomainEvent
        from domain_events.queries import AuditChainHeads

        event_bus.track(DomainEvent, append_to_audit_trail, name=READER, batch_size=500)
        event_bus.answer(AuditChainHeads, audit_chain_heads)
