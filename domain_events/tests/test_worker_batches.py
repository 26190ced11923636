"""A Celery task carries a batch of one handler's deliveries, with a real worker and Redis: each
delivery keeps its own outcome, attempts and retry schedule, a message delivered twice applies
nothing twice, and a worker killed in the middle of a batch loses nothing and repeats nothing
beyond the at-least-once window of a handler that calls out."""

import re
import signal
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from domain_events.bus import event_bus
from domain_events.celery_claims import claim_for_workers
from domain_events.handoff import send_to_celery
from domain_events.models import Delivery
from domain_events.subscriptions import subscriptions
from domain_events.tests.probe.events import ProbeCalledOut, ProbeHappened
from domain_events.tests.probe.models import ProbeRecord, ProbeSwitch
from testsupport.processes import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SLOW = "probe.slow"  # atomic: runs in the worker's transaction
CALL_OUT = "probe.call_out"  # calls out: two phases, no transaction open during the call
RECEIVED = re.compile(r"Task domain_events\.run_delivery\[[0-9a-f-]+\] received")


@pytest.fixture
def recorded_only(settings):
    """Events are recorded and left for a relay: the test plays the relay that claims and sends."""
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}


def publish(event_class, count: int) -> dict[int, int]:
    """`count` events n=1.. of as many aggregates; their deliveries of `handler` by n."""
    handler = SLOW if event_class is ProbeHappened else CALL_OUT
    ids = {}
    for n in range(1, count + 1):
        with transaction.atomic():
            event = event_bus.publish(event_class(tenant_id=uuid.uuid4(), probe_id=uuid.uuid4(), n=n))
        ids[n] = Delivery.objects.get(stored_event__event_id=event.event_id, handler=handler).pk
    return ids


def claim_and_send(handler: str, *, times: int = 1) -> list[int]:
    """What a relay does with a backlog: claim the due deliveries and send them, here `times` over."""
    subscription = subscriptions.get(handler)
    claims, _ = claim_for_workers(100, [subscription])
    for _ in range(times):
        assert send_to_celery([(c, subscription) for c in claims], by_relay=True) == len(claims)
    return [c.delivery_id for c in claims]


def runs(handler: str) -> Counter:
    return Counter(ProbeRecord.objects.filter(handler=handler).values_list("n", flat=True))


def settled(ids) -> bool:
    return not Delivery.objects.filter(pk__in=list(ids), status__in=Delivery.OPEN, attempts=0).exists()


def test_one_fails_one_times_out_one_succeeds_and_only_the_failing_ones_retry_each_on_its_schedule(
    processes, recorded_only
):
    ids = publish(ProbeHappened, 3)
    ProbeSwitch.set(f"{SLOW}:fail:1")
    ProbeSwitch.set(f"{SLOW}:sleep:2", 5)
    worker = processes.worker(
        "worker", concurrency=1, OUTBOX_HANDLER_TIME_LIMIT="0.5", HANDLER_RETRY_SCHEDULE="300,300"
    )
    before = timezone.now()

    assert sorted(claim_and_send(SLOW)) == sorted(ids.values())
    wait_until(lambda: settled(ids.values()), timeout=30, what="the batch's three outcomes")

    assert len(RECEIVED.findall(worker.output())) == 1, "the three deliveries went in one task"
    rows = {d.pk: d for d in Delivery.objects.filter(pk__in=ids.values())}
    failed, slow, done = rows[ids[1]], rows[ids[2]], rows[ids[3]]
    assert (done.status, done.attempts) == ("succeeded", 1)
    assert (failed.status, failed.attempts) == ("failed", 1)
    assert (slow.status, slow.attempts) == ("failed", 1)
    assert "told to fail" in failed.last_error
    assert "time limit" in slow.last_error
    assert failed.next_attempt_at > before + timedelta(seconds=200)
    assert slow.next_attempt_at > before + timedelta(seconds=200)
    assert runs(SLOW) == {3: 1}

    # When n=1's attempt comes, it alone runs again; n=2 waits for its own.
    ProbeSwitch.objects.filter(name=f"{SLOW}:fail:1").delete()
    Delivery.objects.filter(pk=ids[1]).update(next_attempt_at=timezone.now())
    assert claim_and_send(SLOW) == [ids[1]]
    wait_until(lambda: Delivery.objects.filter(pk=ids[1], status="succeeded").exists(), timeout=30, what="n=1's retry")
    again = {d.pk: d for d in Delivery.objects.filter(pk__in=ids.values())}
    assert again[ids[1]].attempts == 2
    assert (again[ids[2]].status, again[ids[2]].attempts) == ("failed", 1)
    assert again[ids[2]].next_attempt_at == slow.next_attempt_at, "n=2 keeps its own schedule"
    assert (again[ids[3]].status, again[ids[3]].attempts) == ("succeeded", 1)
    assert runs(SLOW) == {1: 1, 3: 1}


def test_a_batch_whose_message_comes_twice_applies_nothing_twice(processes, recorded_only):
    slow = publish(ProbeHappened, 4)
    calls = publish(ProbeCalledOut, 4)
    ProbeSwitch.set(f"{SLOW}:sleep", 0.3)
    ProbeSwitch.set(f"{CALL_OUT}:sleep", 0.3)
    claim_and_send(SLOW, times=2)
    claim_and_send(CALL_OUT, times=2)
    # Two pool processes take the two copies of each batch at the same time.
    worker = processes.worker("worker", concurrency=2)

    everything = [*slow.values(), *calls.values()]
    wait_until(
        lambda: Delivery.objects.filter(pk__in=everything, status="succeeded").count() == 8,
        timeout=45,
        what="every delivery of both batches",
    )
    assert len(RECEIVED.findall(worker.output())) == 4, "two batches, each sent twice"
    assert runs(SLOW) == dict.fromkeys(range(1, 5), 1)
    assert runs(CALL_OUT) == dict.fromkeys(range(1, 5), 1)
    assert set(Delivery.objects.filter(pk__in=everything).values_list("attempts", flat=True)) == {1}


def test_a_worker_killed_in_the_middle_of_a_batch_loses_nothing_and_repeats_nothing_beyond_the_window(
    processes, recorded_only
):
    slow = publish(ProbeHappened, 5)
    calls = publish(ProbeCalledOut, 5)
    ProbeSwitch.set(f"{SLOW}:sleep", 0.6)
    ProbeSwitch.set(f"{CALL_OUT}:sleep", 0.6)
    claim_and_send(SLOW)
    claim_and_send(CALL_OUT)
    first = processes.worker("worker-1", concurrency=2)
    # The calls commit one by one; the atomic batch commits at its end: both are half done here.
    wait_until(lambda: sum(runs(CALL_OUT).values()) >= 2, timeout=30, what="two calls made")
    first.kill(signal.SIGKILL)
    assert sum(runs(CALL_OUT).values()) < 5
    assert Delivery.objects.filter(pk__in=list(slow.values()), status="succeeded").count() == 0

    ProbeSwitch.objects.all().delete()
    processes.worker("worker-2", concurrency=2)
    processes.relay("relay")
    everything = [*slow.values(), *calls.values()]
    wait_until(
        lambda: Delivery.objects.filter(pk__in=everything, status="succeeded").count() == 10,
        timeout=60,
        what="every delivery, sent again by the relay",
    )
    # The atomic batch rolled back whole and ran once more; a call may have been made a second
    # time only if the worker died between the call and its record (the at-least-once window).
    assert runs(SLOW) == dict.fromkeys(range(1, 6), 1)
    made = runs(CALL_OUT)
    assert set(made) == set(range(1, 6))
    assert sum(made.values()) <= 6
