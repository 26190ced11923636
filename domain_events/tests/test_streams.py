"""Aggregates' streams: one revision per event, and transactions over several aggregates that lock
their streams in one order, so two of them never wait for each other in a circle."""

import threading
import time
import uuid

import pytest
from django.db import OperationalError, connection, transaction

from domain_events.bus import event_bus
from domain_events.claims import Claim
from domain_events.executor import execute
from domain_events.models import Delivery, StoredEvent, Stream
from domain_events.tests.probe.events import ProbeHappened, ProbeMeasured
from domain_events.tests.probe.models import ProbeRecord, ProbeSwitch

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


def leased(handler: str, events) -> list[Claim]:
    token = uuid.uuid4()
    ids = [Delivery.objects.get(stored_event__event_id=e.event_id, handler=handler).pk for e in events]
    Delivery.objects.filter(pk__in=ids).update(lease_token=token)
    return [Claim(pk, token, handler) for pk in ids]


def happened(aggregate: uuid.UUID, n: int) -> ProbeHappened:
    with transaction.atomic():
        return event_bus.publish(ProbeHappened(tenant_id=TENANT, probe_id=aggregate, n=n))


def batch_open(table: str) -> None:
    """Wait until another backend has written to `table` in a transaction still open."""
    deadline = time.monotonic() + 10
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_locks WHERE relation = %s::regclass AND mode = 'RowExclusiveLock'"
                " AND pid <> pg_backend_pid()",
                [table],
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.02)
    raise AssertionError(f"no open transaction wrote to {table}")


def test_a_batch_leaves_free_the_streams_of_aggregates_its_handlers_record_nothing_on(settings):
    """A batch of `probe.fast` (it records no event) is open on x and y: an event of x is recorded
    meanwhile, without waiting for the batch (a capture's event while a batch of webhook fan-outs
    of the same order runs)."""
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
    x, y = sorted([uuid.uuid4(), uuid.uuid4()])  # the batch runs x's delivery, then sleeps in y's
    events = [happened(x, 0), happened(y, 1)]
    ProbeSwitch.set("probe.fast:sleep:1", 2)
    claims = leased("probe.fast", events)
    reports = []

    def batch() -> None:
        try:
            reports.append(execute(claims))
        finally:
            connection.close()

    thread = threading.Thread(target=batch)
    thread.start()
    batch_open(ProbeRecord._meta.db_table)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '500ms'")
        event_bus.publish(measured(x, 7))
    assert thread.is_alive(), "the batch was still open"
    thread.join(30)
    assert reports[0].succeeded == 2
    assert revisions_of(x) == [1, 2]


def test_a_batch_runs_its_deliveries_in_aggregate_order_and_each_aggregates_in_position_order(settings):
    """The order in which a batch's handlers take their aggregates' streams: by aggregate id, the
    one order every transaction recording several aggregates' events follows, so two of them never
    wait for each other in a circle."""
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
    x, y = sorted([uuid.uuid4(), uuid.uuid4()])
    events = [happened(y, 0), happened(x, 1), happened(y, 2), happened(x, 3)]
    report = execute(leased("probe.fast", events))
    assert report.succeeded == 4
    ran = ProbeRecord.objects.filter(handler="probe.fast").order_by("pk").values_list("n", flat=True)
    assert list(ran) == [1, 3, 0, 2]
