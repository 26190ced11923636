"""A worker with room in its batch takes the deliveries of a handler that calls out whose messages
are still queued behind its own: one statement takes each, stamps it as started and reads what
holds it back; its own message, when it comes, finds it taken and runs nothing. And what waits
behind a delivery that calls out is released by the statement that records its success."""

import uuid

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from domain_events.bus import event_bus
from domain_events.celery_claims import claim_for_workers
from domain_events.models import Delivery
from domain_events.subscriptions import subscriptions
from domain_events.tasks import run_delivery
from domain_events.tests.probe.events import ProbeCalledOut
from domain_events.tests.probe.models import ProbeRecord, ProbeSwitch

pytestmark = pytest.mark.django_db(transaction=True)

CALL_OUT = "probe.call_out"


@pytest.fixture
def recorded_only(settings):
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False, "CELERY_BATCH": 10}


def leased(count: int, *, aggregate: uuid.UUID | None = None):
    """`count` events of the handler that calls out, leased to workers as a relay leases them."""
    for n in range(1, count + 1):
        with transaction.atomic():
            event_bus.publish(ProbeCalledOut(tenant_id=uuid.uuid4(), probe_id=aggregate or uuid.uuid4(), n=n))
    claims, _ = claim_for_workers(100, [subscriptions.get(CALL_OUT)])
    assert len(claims) == count
    return sorted(claims, key=lambda c: c.delivery_id)


def message(claim) -> dict:
    """Run the task a relay's message for `claim` would run, in this process."""
    return run_delivery.run(
        claim.delivery_id, str(claim.token), CALL_OUT, None, None, claim.event_recorded_at.isoformat()
    )


def runs() -> list[int]:
    return sorted(ProbeRecord.objects.filter(handler=CALL_OUT).values_list("n", flat=True))


def test_a_message_runs_its_delivery_and_takes_the_queued_ones_each_in_one_statement(recorded_only):
    first, second, third = leased(3)

    with CaptureQueriesContext(connection) as queries:
        report = message(first)

    assert report == {"succeeded": 3, "failed": 0, "dead": 0, "waiting": 0}
    assert runs() == [1, 2, 3]
    assert set(Delivery.objects.filter(handler=CALL_OUT).values_list("status", flat=True)) == {"succeeded"}
    takes = [q["sql"] for q in queries.captured_queries if "FOR UPDATE SKIP LOCKED" in q["sql"]]
    # Two taken, then one that finds none; no other statement reads a taken delivery before it runs.
    assert len(takes) == 3
    locks = [q["sql"] for q in queries.captured_queries if "FOR UPDATE OF d" in q["sql"]]
    assert locks == [], "a taken delivery is run on what its take read"

    # The taken deliveries' own messages come later: stale, nothing runs twice.
    assert message(second) == {"stale": 1}
    assert message(third) == {"stale": 1}
    assert runs() == [1, 2, 3]


def test_a_taken_delivery_behind_an_earlier_one_of_its_aggregate_waits_for_it(recorded_only):
    aggregate = uuid.uuid4()
    first, second = leased(2, aggregate=aggregate)
    ProbeSwitch.set(f"{CALL_OUT}:fail:1")

    message(first)

    rows = {d.pk: d for d in Delivery.objects.filter(handler=CALL_OUT)}
    assert (rows[first.delivery_id].status, rows[first.delivery_id].attempts) == ("failed", 1)
    assert rows[second.delivery_id].status == "pending"
    assert rows[second.delivery_id].attempts == 0, "taken, it found its aggregate's first event open"
    assert rows[second.delivery_id].held_by == first.delivery_id
    assert runs() == []


def test_a_delivery_held_behind_one_that_calls_out_is_released_by_its_success(recorded_only, settings):
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "CELERY_BATCH": 1}  # each message runs its own
    aggregate = uuid.uuid4()
    first, second = leased(2, aggregate=aggregate)

    message(second)  # its aggregate's first event is still open: it waits behind it
    held = Delivery.objects.get(pk=second.delivery_id)
    assert held.held_by == first.delivery_id
    assert runs() == []

    message(first)  # succeeds, and in the same statement lets the second go

    released = Delivery.objects.get(pk=second.delivery_id)
    assert released.held_by is None
    assert released.next_attempt_at < held.next_attempt_at, "due now, no longer at its blocker's pace"
    assert runs() == [1]
