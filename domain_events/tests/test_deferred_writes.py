"""Writes a handler leaves to the end of an optimistic pass (`running.defer`): the pass's events are
written together, in one statement; a failing write fails no delivery by itself, the batch runs again
handler by handler, and each delivery ends once, with its own outcome."""

import uuid

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from domain_events.bus import event_bus
from domain_events.executor import run_due_here
from domain_events.models import Delivery
from domain_events.running import defer
from domain_events.tests.probe.events import ProbeHappened
from domain_events.tests.probe.models import ProbeRecord, ProbeSwitch

pytestmark = pytest.mark.django_db(transaction=True)

RECORDS = ProbeRecord._meta.db_table


def publish(settings, *ns: int) -> list[int]:
    """Events of their own aggregates; only their `probe.other` deliveries are left to run."""
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
    ids = []
    for n in ns:
        with transaction.atomic():
            event = event_bus.publish(ProbeHappened(tenant_id=uuid.uuid4(), probe_id=uuid.uuid4(), n=n))
        ids.append(Delivery.objects.get(stored_event__event_id=event.event_id, handler="probe.other").pk)
    Delivery.objects.exclude(handler="probe.other").update(status="succeeded")
    return ids


def recorded() -> list[int]:
    return sorted(ProbeRecord.objects.filter(handler="probe.other").values_list("n", flat=True))


def inserts(queries: CaptureQueriesContext) -> int:
    return sum(q["sql"].startswith(f'INSERT INTO "{RECORDS}"') for q in queries.captured_queries)


def test_a_relays_pass_writes_what_its_handlers_left_to_its_end_in_one_statement(settings):
    ids = publish(settings, 1, 2, 3)
    ProbeSwitch.set("probe.other:defer")

    with CaptureQueriesContext(connection) as queries:
        report = run_due_here(10, ["probe.other"])

    assert report.succeeded == 3
    assert recorded() == [1, 2, 3]
    assert inserts(queries) == 1
    assert set(Delivery.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"succeeded"}


def test_a_failing_deferred_write_runs_the_batch_again_handler_by_handler_and_each_delivery_ends_once(settings):
    ids = publish(settings, 1, 2, 3)
    ProbeSwitch.set("probe.other:defer")
    ProbeSwitch.set("probe.other:defer_fail")  # the batch's one write fails in the database

    with CaptureQueriesContext(connection) as queries:
        report = run_due_here(10, ["probe.other"])

    # The careful pass writes each record in its handler's own savepoint: nothing lost, nothing twice.
    assert (report.succeeded, report.failed) == (3, 0)
    assert recorded() == [1, 2, 3]
    assert inserts(queries) == 3
    rows = Delivery.objects.filter(pk__in=ids)
    assert {(d.status, d.attempts) for d in rows} == {("succeeded", 1)}
    assert run_due_here(10, ["probe.other"]).handled == 0


def test_a_handler_failing_beside_deferred_writes_fails_alone(settings):
    ids = publish(settings, 1, 2, 3)
    ProbeSwitch.set("probe.other:defer")
    ProbeSwitch.set("probe.other:fail:2")

    report = run_due_here(10, ["probe.other"])

    assert (report.succeeded, report.failed) == (2, 1)
    assert recorded() == [1, 3]
    statuses = dict(Delivery.objects.filter(pk__in=ids).values_list("pk", "status"))
    assert [statuses[i] for i in ids] == ["succeeded", "failed", "succeeded"]


def test_outside_a_batch_nothing_is_deferred():
    assert defer("probe.other", lambda items: None, object()) is False
