"""Late subscribers and rolling deploys: a handler gets every event from its first sight on;
handlers no code has any more are reported and kept out of claims."""

import time
import uuid

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from domain_events import relay as relay_module
from domain_events import subscribers
from domain_events.bus import event_bus
from domain_events.executor import run_due_here
from domain_events.models import Delivery, StoredEvent, Subscriber
from domain_events.relay import Relay
from domain_events.tests.probe.events import ProbeHappened
from domain_events.tests.probe.models import ProbeRecord
from testsupport.outbox import subscriptions_without
from testsupport.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def publish(n: int = 1, probe_id: uuid.UUID | None = None) -> ProbeHappened:
    with transaction.atomic():
        return event_bus.publish(ProbeHappened(tenant_id=uuid.uuid4(), probe_id=probe_id or uuid.uuid4(), n=n))


@pytest.fixture(autouse=True)
def _a_fresh_deployment():
    """Each test starts as a process that has not yet recorded its handlers."""
    subscribers._registered.clear()
    yield
    subscribers._registered.clear()


def test_a_handler_is_recorded_at_first_sight_with_the_last_position_drawn():
    event = publish(1)
    first = Subscriber.objects.get(name="probe.fast").first_position
    assert first == StoredEvent.objects.get(event_id=event.event_id).position, "first seen right after it"
    Subscriber.objects.all().delete()
    subscribers._registered.clear()
    head = StoredEvent.objects.order_by("-position").values_list("position", flat=True).first()
    subscribers.register()
    row = Subscriber.objects.get(name="probe.fast")
    assert row.first_position == head
    assert row.mode == "on_commit"
    assert "probe.happened" in row.event_types
    # Seen again later: the first position stays.
    publish(2)
    Relay().drain()
    subscribers.register()
    assert Subscriber.objects.get(name="probe.fast").first_position == head


@pytest.mark.parametrize("path", ["fast path", "relay"])
def test_before_a_handlers_first_delivery_of_an_aggregate_its_earlier_events_are_covered(path, settings):
    """A rolling deploy: older code records n=1 with no delivery for `probe.fast`; newer code then
    records n=2 of the same aggregate. `probe.fast` must not run n=2 first, on any path, though no
    relay has covered n=1 yet."""
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": path == "fast path"}
    subscribers.register()  # the newer code's first process records its handlers
    probe_id = uuid.uuid4()
    with subscriptions_without("probe.fast"):
        first = publish(1, probe_id)
    second = publish(2, probe_id)
    if path == "relay":
        run_due_here(50, ["probe.fast"])  # a relay's claim, before any cover has run
    written = Delivery.objects.get(stored_event__event_id=first.event_id, handler="probe.fast")
    waiting = Delivery.objects.get(stored_event__event_id=second.event_id, handler="probe.fast")
    assert waiting.held_by == written.pk, "n=2 waits behind the delivery written for n=1"
    assert not ProbeRecord.objects.filter(handler="probe.fast").exists()
    Relay(batch_size=50).drain()
    Relay(batch_size=50).drain()
    ran = ProbeRecord.objects.filter(handler="probe.fast").order_by("id").values_list("event_id", flat=True)
    assert list(ran) == [first.event_id, second.event_id]


@pytest.mark.e2e
def test_an_event_published_by_code_without_the_handler_reaches_it_through_a_relay_that_has_it(processes):
    subscribers.register()  # the new code's first process records its handlers
    with subscriptions_without("probe.fast"):
        event = publish(7)  # a publisher on older code: no delivery for probe.fast
    assert not Delivery.objects.filter(stored_event__event_id=event.event_id, handler="probe.fast").exists()
    assert ProbeRecord.objects.filter(handler="probe.other", event_id=event.event_id).exists()

    processes.relay()
    wait_until(
        lambda: ProbeRecord.objects.filter(handler="probe.fast", event_id=event.event_id).exists(),
        timeout=30,
        what="the late handler to get the event",
    )
    assert ProbeRecord.objects.filter(handler="probe.fast", event_id=event.event_id).count() == 1
    assert Delivery.objects.get(stored_event__event_id=event.event_id, handler="probe.fast").status == "succeeded"


def test_covering_writes_each_missing_delivery_once_and_nothing_from_before_first_sight():
    before = publish(1)
    Relay().drain()
    subscribers.register()
    with subscriptions_without("probe.fast"):
        after = publish(2)
    assert subscribers.cover() == 1
    assert subscribers.cover() == 0
    Relay().drain()
    assert (
        not Delivery.objects.filter(stored_event__event_id=before.event_id, handler="probe.fast")
        .exclude(status="succeeded")
        .exists()
    )
    assert ProbeRecord.objects.filter(handler="probe.fast", event_id=after.event_id).count() == 1


def test_deliveries_of_a_handler_no_code_has_are_reported_and_never_claimed(capsys):
    subscribers.register()
    Subscriber.objects.filter(name="probe.fast").update(name="probe.retired")
    Subscriber.objects.filter(name="probe.slow").update(name="probe.retired_cleanly")
    event = publish(1)
    stored = StoredEvent.objects.get(event_id=event.event_id)
    Delivery.objects.create(
        stored_event=stored,
        handler="probe.retired",
        event_type=stored.type,
        tenant_id=stored.tenant_id,
        aggregate_id=stored.aggregate_id,
        next_attempt_at=stored.recorded_at,
    )
    Relay().drain()
    orphan = Delivery.objects.get(handler="probe.retired")
    assert orphan.status == "pending"
    assert orphan.attempts == 0

    call_command("check")
    err = capsys.readouterr().err
    assert "domain_events.W001" in err
    assert "probe.retired" in err
    assert "1 open deliveries" in err
    assert "probe.retired_cleanly" not in err, "nothing left to run: nothing to warn about"


def test_the_superuser_admin_lists_subscribers_and_warns_about_orphans(operator_admin):
    subscribers.register()
    Subscriber.objects.create(
        name="probe.retired", mode="on_commit", first_position=0, covered_position=0, last_seen_at="2026-01-01T00:00Z"
    )
    page = operator_admin.get("/admin/domain_events/subscriber/", follow=True).content.decode()
    assert "probe.fast" in page
    assert "probe.retired" in page
    assert "no longer subscribed" in page


def _covered_in(relay: Relay) -> int:
    """How many cover scans (a lock of the subscribers' rows to cover) one pass of `relay` made."""
    locks_subscribers = f'FROM "{Subscriber._meta.db_table}"'
    with CaptureQueriesContext(connection) as queries:
        relay.drain()
    return sum(1 for q in queries.captured_queries if locks_subscribers in q["sql"] and "SKIP LOCKED" in q["sql"])


def test_a_relay_covers_on_its_first_pass_and_when_a_process_records_its_handlers_not_on_every_pass():
    subscribers.register()
    relay = Relay(batch_size=50)
    relay._listen()
    try:
        assert _covered_in(relay) == 1, "the first pass covers"
        for _ in range(3):
            time.sleep(relay_module.COVER_EVERY)  # passes further apart than the old cadence
            publish(1)
            assert _covered_in(relay) == 0, "nothing changed: no cover"

        subscribers.register()  # a new process records its handlers, and tells the relays
        assert relay._wait() is True
        with subscriptions_without("probe.fast"):
            late = publish(2)  # an older publisher, meanwhile
        assert _covered_in(relay) == 1
        assert Delivery.objects.filter(stored_event__event_id=late.event_id, handler="probe.fast").exists()
    finally:
        relay._listener.close()
