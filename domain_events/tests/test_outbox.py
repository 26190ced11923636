"""The outbox: atomic with the change, refused outside a transaction, gap-safe positions."""

import threading
import uuid

import pytest
from django.db import connection, transaction

from domain_events import sequencer, sql
from domain_events.bus import PublishOutsideTransaction, event_bus
from domain_events.context import traced
from domain_events.models import Delivery, StoredEvent
from domain_events.relay import READERS, Relay
from domain_events.sequencer import POSITIONS_PAYLOAD
from domain_events.tests.probe.events import ProbeHappened
from domain_events.tests.probe.models import ProbeRecord

pytestmark = pytest.mark.django_db(transaction=True)


def probe(n: int = 1, **kwargs) -> ProbeHappened:
    return ProbeHappened(tenant_id=kwargs.pop("tenant_id", uuid.uuid4()), probe_id=uuid.uuid4(), n=n, **kwargs)


def test_a_rolled_back_transaction_stores_no_event_and_no_delivery():
    with pytest.raises(RuntimeError), transaction.atomic():
        event_bus.publish(probe())
        raise RuntimeError("the change failed")
    assert StoredEvent.objects.count() == 0
    assert Delivery.objects.count() == 0
    assert ProbeRecord.objects.count() == 0


def test_a_committed_event_is_stored_with_a_delivery_per_deferred_handler():
    with transaction.atomic():
        event = event_bus.publish(probe())
    stored = StoredEvent.objects.get(event_id=event.event_id)
    assert stored.type == "probe.happened"
    assert stored.payload == {"probe_id": str(event.probe_id), "n": 1}
    assert stored.position is not None
    handlers = set(Delivery.objects.filter(stored_event=stored).values_list("handler", flat=True))
    assert handlers == {"probe.fast", "probe.other", "probe.slow", "probe.follow_up"}


def test_publish_outside_a_transaction_is_refused():
    with pytest.raises(PublishOutsideTransaction):
        event_bus.publish(probe())
    assert StoredEvent.objects.count() == 0


def test_an_inline_handler_failure_rolls_the_whole_operation_back():
    with pytest.raises(ValueError, match="negative"), transaction.atomic():
        event_bus.publish(probe(n=-1))
    assert StoredEvent.objects.count() == 0


def test_correlation_comes_from_the_context_and_causation_defaults_to_the_event_itself():
    with traced("req-123"), transaction.atomic():
        event = event_bus.publish(probe())
    assert event.correlation_id == "req-123"
    assert event.causation_id == event.event_id
    stored = StoredEvent.objects.get(event_id=event.event_id)
    assert stored.correlation_id == "req-123"


def test_a_reader_tracking_position_never_skips_an_event_that_committed_late():
    """Transaction A publishes first and stays open; B publishes later and commits first.

    A reader that has seen B's position must still find A afterwards: A's position is higher.
    """
    a_published = threading.Event()
    a_may_commit = threading.Event()
    result: dict[str, object] = {}

    def slow_transaction() -> None:
        try:
            with transaction.atomic():
                result["a"] = event_bus.publish(probe(n=1))
                a_published.set()
                assert a_may_commit.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=slow_transaction)
    thread.start()
    assert a_published.wait(10)
    with transaction.atomic():
        b = event_bus.publish(probe(n=2))
    b_stored = StoredEvent.objects.get(event_id=b.event_id)
    seen = list(StoredEvent.objects.filter(position__gt=0).order_by("position").values_list("event_id", "position"))
    assert [e for e, _ in seen] == [b.event_id]
    cursor = seen[-1][1]

    a_may_commit.set()
    thread.join(10)
    after = list(StoredEvent.objects.filter(position__gt=cursor).values_list("event_id", flat=True))
    assert after == [result["a"].event_id]
    assert StoredEvent.objects.get(event_id=result["a"].event_id).position > b_stored.position


def notifications_after(publish_count: int) -> list[str]:
    """The payloads of the notifications that `publish_count` events in one transaction send."""
    with connection.cursor() as cursor:
        cursor.execute('LISTEN "shelfwise_outbox"')
    with transaction.atomic():
        for n in range(publish_count):
            event_bus.publish(probe(n=n))
    with connection.cursor() as cursor:
        cursor.execute('UNLISTEN "shelfwise_outbox"')
    return [n.payload for n in connection.connection.notifies(timeout=0.5, stop_after=10)]


def test_a_transaction_whose_events_are_left_to_relays_notifies_them_once(settings):
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
    assert notifications_after(5) == [""]


def test_a_publisher_that_dispatches_itself_wakes_only_position_readers():
    """Its sequencer run announces new positions (for projections); no delivery work is announced."""
    assert notifications_after(3) == [POSITIONS_PAYLOAD]


def test_the_sequencer_reads_its_work_list_from_the_partial_index_whatever_the_statistics():
    """An ANALYZE taken while the table was empty must not turn the sequencer into a table scan."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("ANALYZE domain_events_storedevent")
        cursor.execute(sql.SEQUENCER_PRELUDE)
        cursor.execute("EXPLAIN " + sql.SEQUENCE, [sequencer.BATCH])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "storedevent_unsequenced" in plan
    assert "Seq Scan on domain_events_storedevent" not in plan


def test_a_sequencer_run_is_the_prelude_and_the_numbering_statement_in_one_function():
    """The function migration 0007 installed runs what the plan test above checks, lock first."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT prosrc, proconfig FROM pg_proc WHERE proname = 'domain_events_sequence'")
        source, config = cursor.fetchone()
    flat = " ".join(source.split())
    assert " ".join(sql.SEQUENCE.replace("%s", "_batch").split()) in flat
    assert flat.index(f"pg_advisory_xact_lock({sql.SEQUENCER_LOCK})") < flat.index("WITH todo")
    assert config == ["enable_seqscan=off"]


def test_new_positions_alone_wake_a_relay_for_its_position_readers_only():
    """Whoever numbered the events hands on their deliveries; the other relays move the readers."""
    relay = Relay(poll_interval=2)
    relay._listen()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify('shelfwise_outbox', %s)", [POSITIONS_PAYLOAD])
        assert relay._wait() is READERS
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify('shelfwise_outbox', '')")
        assert relay._wait() is True, "delivery work wakes the whole pass"
    finally:
        relay._listener.close()
