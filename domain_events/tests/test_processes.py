"""At-least-once and once-only with real processes: relays and Celery workers, killed with SIGKILL."""

import signal
import uuid

import pytest
from django.db import transaction
from django.db.models import Count

from domain_events.bus import event_bus
from domain_events.models import Delivery
from domain_events.testing import wait_until
from domain_events.tests.probe.events import ProbeHappened
from domain_events.tests.probe.models import ProbeRecord, ProbeSwitch

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def publish_many(count: int) -> list[ProbeHappened]:
    events = []
    for n in range(count):
        with transaction.atomic():
            events.append(event_bus.publish(ProbeHappened(tenant_id=uuid.uuid4(), probe_id=uuid.uuid4(), n=n)))
    return events


def all_succeeded(handler: str, count: int) -> bool:
    return Delivery.objects.filter(handler=handler, status=Delivery.Status.SUCCEEDED).count() == count


def runs_per_event(handler: str) -> dict[uuid.UUID, int]:
    rows = ProbeRecord.objects.filter(handler=handler).values("event_id").annotate(n=Count("id"))
    return {row["event_id"]: row["n"] for row in rows}


def test_a_worker_runs_celery_handlers_sent_on_commit(processes):
    processes.worker()
    events = publish_many(5)
    wait_until(lambda: all_succeeded("probe.slow", 5), timeout=30, what="5 slow deliveries")
    assert runs_per_event("probe.slow") == {e.event_id: 1 for e in events}


def test_killing_a_relay_mid_batch_loses_nothing_and_applies_nothing_twice(processes, settings):
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
    ProbeSwitch.set("probe.fast:sleep", 0.05)
    events = publish_many(40)
    first = processes.relay("relay-1", "--batch-size", "10")
    wait_until(lambda: ProbeRecord.objects.filter(handler="probe.fast").exists() or None, what="the first batch")
    wait_until(lambda: Delivery.objects.filter(handler="probe.fast", status="succeeded").count() >= 10, what="a batch")
    first.kill(signal.SIGKILL)
    done_when_killed = Delivery.objects.filter(handler="probe.fast", status="succeeded").count()
    assert done_when_killed < 40, "the relay finished before it could be killed; slow the handler down"

    processes.relay("relay-2", "--batch-size", "10")
    wait_until(lambda: all_succeeded("probe.fast", 40), timeout=60, what="all 40 fast deliveries")
    assert runs_per_event("probe.fast") == {e.event_id: 1 for e in events}
