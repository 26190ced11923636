"""Aggregates' streams: one revision per event, and transactions over several aggregates that lock
their streams in one order, so two of them never wait for each other in a circle."""

import threading
import uuid

import pytest
from django.db import OperationalError, connection, transaction

from domain_events.bus import event_bus
from domain_events.models import StoredEvent, Stream
from domain_events.tests.probe.events import ProbeMeasured

pytestmark = pytest.mark.django_db(transaction=True)

TENANT = uuid.uuid4()
ROUNDS = 40


def measured(aggregate: uuid.UUID, value: int) -> ProbeMeasured:
    return ProbeMeasured(tenant_id=TENANT, probe_id=aggregate, value_mm=value, unit_note="")


def run_side_by_side(*publishers) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(publisher) -> None:
        try:
            publisher()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=guarded, args=(p,)) for p in publishers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


def revisions_of(aggregate: uuid.UUID) -> list[int]:
    return list(
        StoredEvent.objects.filter(aggregate_id=aggregate).order_by("position").values_list("revision", flat=True)
    )


def test_two_publishers_over_the_same_aggregates_in_opposite_orders_never_deadlock():
    x, y = uuid.uuid4(), uuid.uuid4()
    start = threading.Barrier(2, timeout=30)

    def publisher(first: uuid.UUID, second: uuid.UUID):
        def run() -> None:
            for n in range(ROUNDS):
                start.wait()
                with transaction.atomic():
                    event_bus.publish_all([measured(first, n), measured(second, n)])

        return run

    assert run_side_by_side(publisher(x, y), publisher(y, x)) == []
    assert revisions_of(x) == list(range(1, 2 * ROUNDS + 1))
    assert revisions_of(y) == list(range(1, 2 * ROUNDS + 1))
    assert Stream.objects.get(aggregate_id=x).revision == 2 * ROUNDS
    assert Stream.objects.get(aggregate_id=x).aggregate_type == "probe"


def test_without_the_stream_locks_taken_first_the_same_two_publishers_deadlock():
    """What `publish_all` prevents: each holds its first aggregate's stream and wants the other's."""
    x, y = uuid.uuid4(), uuid.uuid4()
    both_hold_one = threading.Barrier(2, timeout=30)

    def publisher(first: uuid.UUID, second: uuid.UUID):
        def run() -> None:
            with transaction.atomic():
                event_bus.publish(measured(first, 1))
                both_hold_one.wait()
                event_bus.publish(measured(second, 1))

        return run

    errors = run_side_by_side(publisher(x, y), publisher(y, x))
    assert any(isinstance(e, OperationalError) and "deadlock detected" in str(e) for e in errors), errors


def test_each_event_stores_its_revision_in_its_aggregates_stream():
    aggregate = uuid.uuid4()
    for n in range(3):
        with transaction.atomic():
            event_bus.publish(measured(aggregate, n))
    assert revisions_of(aggregate) == [1, 2, 3]
    stream = Stream.objects.get(aggregate_id=aggregate)
    assert (stream.revision, stream.tenant_id) == (3, TENANT)
