"""The Celery hand-off: lost messages are sent again quickly, slow queues get no duplicates, and no
update of a claimed row outlives its lease."""

import re
import signal
import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from domain_events import probes
from domain_events.bus import event_bus
from domain_events.celery_claims import claim_for_workers
from domain_events.executor import execute
from domain_events.handoff import delivery_start, send_to_celery
from domain_events.models import Delivery, QueueMark
from domain_events.probes import MARK_STEP, queue_reached
from domain_events.subscriptions import subscriptions
from domain_events.tasks import run_delivery
from domain_events.tests.probe.events import ProbeCalledOut, ProbeHappened
from domain_events.tests.probe.models import ProbeRecord, ProbeSwitch
from testsupport.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)
SLOW = "probe.slow"


def publish_many(count: int) -> list[ProbeHappened]:
    events = []
    for n in range(count):
        with transaction.atomic():
            events.append(event_bus.publish(ProbeHappened(tenant_id=uuid.uuid4(), probe_id=uuid.uuid4(), n=n)))
    return events


def slow_deliveries():
    return Delivery.objects.filter(handler=SLOW)


def make_due() -> None:
    slow_deliveries().update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def all_done(count: int) -> bool:
    return slow_deliveries().filter(status="succeeded").count() == count


def runs_per_event() -> set[int]:
    return set(
        ProbeRecord.objects.filter(handler=SLOW).values("event_id").annotate(n=Count("id")).values_list("n", flat=True)
    )


def test_an_unstarted_message_is_sent_again_only_once_a_later_one_on_its_queue_has_started(redis_broker):
    redis_broker.flushdb()
    publish_many(1)
    sent = slow_deliveries().get()
    assert sent.sent_at is not None
    make_due()
    claims, probes = claim_for_workers(10, [subscriptions.get(SLOW)])
    assert claims == [], "no proof of loss yet: the queue may merely be slow"
    assert probes == {"probe"}
    assert slow_deliveries().get().next_attempt_at > timezone.now(), "looked at again later, not at every pass"

    queue_reached("probe", sent.sent_at + timedelta(milliseconds=1))
    make_due()
    claims, _ = claim_for_workers(10, [subscriptions.get(SLOW)])
    assert [c.delivery_id for c in claims] == [sent.pk]
    assert slow_deliveries().get().sent_at is None


def test_a_relay_never_overwrites_the_retry_time_a_worker_has_just_recorded(redis_broker, settings):
    settings.HANDLER_RETRY_SCHEDULE = [600]
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
    redis_broker.flushdb()
    ProbeSwitch.set("probe.slow:fail")
    publish_many(1)
    [claim], _ = claim_for_workers(10, [subscriptions.get(SLOW)])
    # The worker is quicker than the relay's bookkeeping: it starts, runs and fails the delivery...
    started = delivery_start(claim.delivery_id, claim.token)
    assert started is not None
    assert execute([started]).failed == 1
    retry_at = slow_deliveries().get().next_attempt_at
    assert retry_at > timezone.now() + timedelta(seconds=400)
    # ...then the relay records its send: fenced by the token, it changes nothing.
    assert send_to_celery([(claim, subscriptions.get(SLOW))], by_relay=True) == 1
    assert slow_deliveries().get().next_attempt_at == retry_at
    # A stale message (its lease gone) is dropped by the worker.
    assert delivery_start(claim.delivery_id, claim.token) is None


def test_an_atomic_handlers_message_runs_under_the_row_lock_without_a_start_stamp(redis_broker, settings):
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
    redis_broker.flushdb()
    publish_many(1)
    [claim], _ = claim_for_workers(10, [subscriptions.get(SLOW)])
    probes._marked.clear()  # what this process remembers of earlier tests' queue marks
    sent_at = timezone.now()
    result = run_delivery(claim.delivery_id, str(claim.token), SLOW, sent_at.isoformat())

    assert result == {"succeeded": 1, "failed": 0, "dead": 0, "waiting": 0}
    done = slow_deliveries().get()
    assert done.status == "succeeded"
    assert done.started_at is None, "an atomic handler needs no start stamp: relays skip its locked row"
    assert QueueMark.objects.get(queue="probe").started_sent_at == sent_at, "the queue was proven reached"
    # The same message again (a duplicate, or a lease taken over) is stale and runs nothing.
    assert run_delivery(claim.delivery_id, str(claim.token), SLOW, sent_at.isoformat()) == {"stale": 1}
    assert runs_per_event() == {1}


def test_workers_record_reaching_a_queue_at_most_once_per_step_and_probes_always():
    probes._marked.clear()
    start = timezone.now()
    queue_reached("steps", start, throttled=True)
    queue_reached("steps", start + MARK_STEP / 2, throttled=True)
    assert QueueMark.objects.get(queue="steps").started_sent_at == start
    queue_reached("steps", start + MARK_STEP, throttled=True)
    assert QueueMark.objects.get(queue="steps").started_sent_at == start + MARK_STEP
    probe = start + MARK_STEP + timedelta(milliseconds=1)
    queue_reached("steps", probe)
    assert QueueMark.objects.get(queue="steps").started_sent_at == probe


@pytest.mark.e2e
def test_messages_lost_with_the_broker_queue_are_sent_again_within_seconds(processes, redis_broker):
    """A Redis restart that loses the queue: a relay proves the loss with a probe and sends again,
    long before the 5-minute fallback."""
    events = publish_many(5)
    assert redis_broker.llen("probe") == 5
    redis_broker.flushdb()
    processes.worker("worker", OUTBOX_CELERY_LEASE="300")
    processes.relay("relay", OUTBOX_CELERY_LEASE="300")
    wait_until(lambda: all_done(5), timeout=30, what="the lost deliveries to be sent again and run")
    assert runs_per_event() == {1}
    assert len(events) == 5
    assert QueueMark.objects.get(queue="probe").probe_sent_at is not None


@pytest.mark.e2e
def test_prefetched_messages_of_a_killed_worker_are_sent_again_within_seconds(processes):
    ProbeSwitch.set("probe.slow:sleep", 0.3)
    # One delivery per task: the messages the killed worker had prefetched are what is looked at.
    worker = processes.worker("worker-1", concurrency=1, OUTBOX_CELERY_BATCH="1")
    publish_many(12)
    wait_until(lambda: slow_deliveries().filter(status="succeeded").count() >= 2, what="2 done")
    worker.kill(signal.SIGKILL)
    assert slow_deliveries().filter(status="succeeded").count() < 12
    processes.worker("worker-2", concurrency=2, OUTBOX_CELERY_LEASE="300")
    processes.relay("relay", OUTBOX_CELERY_LEASE="300")
    wait_until(lambda: all_done(12), timeout=45, what="all 12 slow deliveries")
    assert runs_per_event() == {1}


@pytest.mark.e2e
def test_a_queue_that_is_merely_slow_gets_no_duplicate_messages(processes):
    ProbeSwitch.set("probe.slow:sleep", 0.4)
    processes.relay("relay", OUTBOX_CELERY_LEASE="300")
    # One delivery per task, so that the queue stays slow (a worker under backlog would take the
    # queued deliveries into its batch, `test_worker_batches`).
    worker = processes.worker("worker", concurrency=1, OUTBOX_CELERY_LEASE="300", OUTBOX_CELERY_BATCH="1")
    publish_many(12)  # about 5 s of work, far past the 1 s send check of the tests
    wait_until(lambda: all_done(12), timeout=60, what="all 12 slow deliveries")
    log = worker.output()
    received = re.findall(r"Task domain_events\.run_delivery\[[0-9a-f-]+\] received", log)
    assert len(received) == 12, log[-3000:]
    assert "'stale'" not in log
    assert runs_per_event() == {1}


def leased_call_out(n: int = 1):
    with transaction.atomic():
        event = event_bus.publish(ProbeCalledOut(tenant_id=uuid.uuid4(), probe_id=uuid.uuid4(), n=n))
    delivery = Delivery.objects.get(handler="probe.call_out", stored_event__event_id=event.event_id)
    return event, delivery_start(delivery.pk, delivery.lease_token)


def test_a_non_atomic_handler_calls_out_with_no_transaction_open_and_its_outcome_is_recorded(redis_broker):
    redis_broker.flushdb()
    event, claim = leased_call_out()
    report = execute([claim])
    assert report.succeeded == 1, Delivery.objects.get(handler="probe.call_out").last_error
    assert ProbeRecord.objects.filter(handler="probe.call_out", event_id=event.event_id).count() == 1
    assert Delivery.objects.get(handler="probe.call_out").status == "succeeded"


def test_a_non_atomic_handler_that_fails_is_retried_and_one_that_lost_its_lease_records_nothing(redis_broker):
    redis_broker.flushdb()
    ProbeSwitch.set("probe.call_out:fail")
    _, claim = leased_call_out(1)
    assert execute([claim]).failed == 1
    failed = Delivery.objects.get(pk=claim.delivery_id)
    assert failed.status == "failed"
    assert "told to fail" in failed.last_error
    assert failed.attempts == 1

    ProbeSwitch.objects.all().delete()
    ProbeSwitch.set("probe.call_out:steal_lease")
    _, claim = leased_call_out(2)
    assert execute([claim]).handled == 0
    taken = Delivery.objects.get(pk=claim.delivery_id)
    assert taken.status == "pending", "the outcome of a run whose lease was lost is dropped"
    assert taken.attempts == 0
