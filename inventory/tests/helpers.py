"""Reading back what the services published."""

from domain_events.models import StoredEvent


def events_of(event_type: str, **payload: object) -> list[StoredEvent]:
    """Stored events of `event_type` whose payload contains every `payload` item, in order."""
    stored = StoredEvent.objects.filter(type=event_type).order_by("id")
    return [e for e in stored if all(e.payload.get(k) == v for k, v in payload.items())]
