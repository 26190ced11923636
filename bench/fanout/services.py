"""The one write the bench drives through the platform: record an event, as a service would."""

import uuid

from django.db import transaction

from bench.fanout.events import CeleryFanoutHappened, FanoutHappened
from bench.fanout.names import NOTE
from domain_events.bus import event_bus


def fanout_event_record(*, tenant_id: uuid.UUID, account: int, celery: bool = False) -> None:
    """Publish one bench event in its own transaction (five deliveries, dispatched per settings)."""
    event_cls = CeleryFanoutHappened if celery else FanoutHappened
    with transaction.atomic():
        event_bus.publish(event_cls(tenant_id=tenant_id, subject_id=uuid.uuid4(), account=account, note=NOTE))
