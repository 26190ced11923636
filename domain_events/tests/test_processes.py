"""At-least-once and once-only with real processes: relays and Celery workers, killed with SIGKILL."""

import signal
import sys
import uuid

import pytest
from django.db import transaction
from django.db.models import Count

from domain_events.bus import event_bus
from domain_events.models import Delivery
from domain_events.tests.probe.events import ProbeHappened
from domain_events.tests.probe.models import ProbeRecord, ProbeSwitch
from testsupport.processes import free_port, wait_until

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


def test_killing_a_worker_mid_batch_loses_nothing_and_applies_nothing_twice(processes):
    ProbeSwitch.set("probe.slow:sleep", 0.2)
    # Batches of two, so that some commit before the kill and some are cut off: with the default
    # batch, a backlog of 20 can go in one transaction and commit before the first look.
    worker = processes.worker("worker-1", concurrency=2, OUTBOX_CELERY_BATCH="2")
    events = publish_many(20)
    wait_until(lambda: Delivery.objects.filter(handler="probe.slow", status="succeeded").count() >= 4, what="4 done")
    worker.kill(signal.SIGKILL)
    assert Delivery.objects.filter(handler="probe.slow", status="succeeded").count() < 20

    processes.worker("worker-2", concurrency=2)
    processes.relay("relay")
    wait_until(lambda: all_succeeded("probe.slow", 20), timeout=90, what="all 20 slow deliveries")
    assert runs_per_event("probe.slow") == {e.event_id: 1 for e in events}


def test_two_relays_in_parallel_deliver_each_event_to_each_handler_once(processes, settings):
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
    ProbeSwitch.set("probe.fast:sleep", 0.01)
    processes.relay("relay-a", "--batch-size", "5")
    processes.relay("relay-b", "--batch-size", "5")
    events = publish_many(60)
    wait_until(lambda: all_succeeded("probe.fast", 60) and all_succeeded("probe.other", 60), timeout=60, what="all")
    assert runs_per_event("probe.fast") == {e.event_id: 1 for e in events}
    assert runs_per_event("probe.other") == {e.event_id: 1 for e in events}
    # Both relays did part of the work.
    pids = set(ProbeRecord.objects.filter(handler="probe.fast").values_list("pid", flat=True))
    assert len(pids) == 2


PUBLISH_FIVE = """
import uuid
from django.db import transaction
from domain_events.bus import event_bus
from domain_events.tests.probe.events import ProbeHappened
for n in range(5):
    with transaction.atomic():
        event_bus.publish(ProbeHappened(tenant_id=uuid.uuid4(), probe_id=uuid.uuid4(), n=n))
print("published 5")
"""


def test_a_broker_outage_delays_celery_handlers_but_loses_nothing(processes, tmp_path):
    port = free_port()  # a private Redis: kept for its restart, and no one else's
    url = f"redis://127.0.0.1:{port}/0"
    redis_argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    broker = processes.start("private-redis", [*redis_argv, "--dir", str(tmp_path)])
    broker.wait_for_output("Ready to accept connections")
    processes.worker("worker", CELERY_BROKER_URL=url)
    processes.relay("relay", CELERY_BROKER_URL=url)

    broker.kill(signal.SIGKILL)
    publisher = processes.start(
        "publisher", [sys.executable, "manage.py", "shell", "-c", PUBLISH_FIVE], CELERY_BROKER_URL=url
    )
    assert publisher.popen.wait(60) == 0, publisher.output()
    assert "published 5" in publisher.output()
    # The publisher and the in-process handlers (the relay's, as served) did not notice the outage...
    wait_until(
        lambda: ProbeRecord.objects.filter(handler="probe.fast").count() == 5,
        what="the relay to run the in-process handlers during the outage",
    )
    # ...and the celery-mode deliveries are stored, waiting for the broker.
    assert Delivery.objects.filter(handler="probe.slow", status="pending").count() == 5

    broker = processes.start("private-redis-again", [*redis_argv, "--dir", str(tmp_path)])
    broker.wait_for_output("Ready to accept connections")
    wait_until(lambda: all_succeeded("probe.slow", 5), timeout=90, what="the slow deliveries after the outage")
    assert set(runs_per_event("probe.slow").values()) == {1}
