"""A relay's batch runs in one transaction with a savepoint per delivery: each delivery keeps its
own outcome, attempts and retry schedule, whether its handler fails, runs past its time limit or
breaks the connection, and nothing of the others is lost or applied twice."""

import uuid
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from domain_events.bus import event_bus
from domain_events.claims import Claim
from domain_events.executor import execute, run_due_here
from domain_events.models import Delivery
from domain_events.tests.probe.events import ProbeHappened
from domain_events.tests.probe.models import ProbeRecord, ProbeSwitch

pytestmark = pytest.mark.django_db(transaction=True)


def publish_three(settings) -> dict[int, int]:
    """Events n=1, 2, 3 of three aggregates; only their `probe.fast` deliveries are left to run."""
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
    ids = {}
    for n in (1, 2, 3):
        with transaction.atomic():
            event = event_bus.publish(ProbeHappened(tenant_id=uuid.uuid4(), probe_id=uuid.uuid4(), n=n))
        ids[n] = Delivery.objects.get(stored_event__event_id=event.event_id, handler="probe.fast").pk
    Delivery.objects.exclude(handler="probe.fast").update(status="succeeded")
    return ids


def records(n: int) -> int:
    return ProbeRecord.objects.filter(handler="probe.fast", n=n).count()


def test_one_fails_one_times_out_one_succeeds_and_only_the_failing_ones_retry_each_on_its_schedule(settings):
    ids = publish_three(settings)
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "HANDLER_TIME_LIMIT": timedelta(seconds=0.3)}
    ProbeSwitch.set("probe.fast:fail:1")
    ProbeSwitch.set("probe.fast:sleep:2", 3)
    before = timezone.now()

    report = run_due_here(10, ["probe.fast"])

    assert (report.succeeded, report.failed) == (1, 2)
    rows = {d.pk: d for d in Delivery.objects.filter(pk__in=ids.values())}
    failed, slow, done = rows[ids[1]], rows[ids[2]], rows[ids[3]]
    assert (done.status, done.attempts, records(3)) == ("succeeded", 1, 1)
    assert (failed.status, failed.attempts, records(1)) == ("failed", 1, 0)
    assert (slow.status, slow.attempts, records(2)) == ("failed", 1, 0)
    assert "told to fail" in failed.last_error
    assert "time limit" in slow.last_error
    assert failed.next_attempt_at > before
    assert slow.next_attempt_at > before

    # Nothing is due before its own schedule; when n=1's attempt comes, it alone runs again.
    assert run_due_here(10, ["probe.fast"]).handled == 0
    ProbeSwitch.objects.filter(name="probe.fast:fail:1").delete()
    Delivery.objects.filter(pk=ids[1]).update(next_attempt_at=timezone.now())
    again = run_due_here(10, ["probe.fast"])
    assert (again.succeeded, again.failed) == (1, 0)
    assert Delivery.objects.get(pk=ids[1]).attempts == 2
    assert Delivery.objects.get(pk=ids[2]).status == "failed", "n=2 waits for its own next attempt"
    assert (records(1), records(2), records(3)) == (1, 0, 1)


def test_a_delivery_that_breaks_the_connection_fails_alone_and_the_others_apply_once(settings):
    ids = publish_three(settings)
    ProbeSwitch.set("probe.fast:kill:2")

    report = run_due_here(10, ["probe.fast"])

    assert (report.succeeded, report.failed) == (2, 1)
    rows = {d.pk: d for d in Delivery.objects.filter(pk__in=ids.values())}
    assert [rows[ids[n]].status for n in (1, 2, 3)] == ["succeeded", "failed", "succeeded"]
    assert [rows[ids[n]].attempts for n in (1, 2, 3)] == [1, 1, 1]
    assert (records(1), records(2), records(3)) == (1, 0, 1)
    assert rows[ids[2]].next_attempt_at > timezone.now()
    with connection.cursor() as cursor:  # the relay's connection is usable again
        cursor.execute("SELECT 1")


def test_a_batch_handed_on_twice_applies_nothing_twice(settings):
    ids = publish_three(settings)
    token = uuid.uuid4()
    Delivery.objects.filter(pk__in=ids.values()).update(lease_token=token)
    claims = [Claim(pk, token, "probe.fast") for pk in ids.values()]

    first = execute(claims)
    second = execute(claims)

    assert (first.succeeded, second.handled) == (3, 0)
    assert (records(1), records(2), records(3)) == (1, 1, 1)
    assert set(Delivery.objects.filter(pk__in=ids.values()).values_list("attempts", flat=True)) == {1}
