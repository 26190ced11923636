"""The outbox: atomic with the change, refused outside a transaction, gap-safe positions."""

import logging
import threading
import time
import uuid
from datetime import timedelta

import psycopg
import pytest
from django.db import connection, transaction

from domain_events import tracking
from domain_events.bus import PublishOutsideTransaction, event_bus
from domain_events.context import traced
from domain_events.head import drawn, head, oldest_writer
from domain_events.models import Checkpoint, Delivery, StoredEvent
from domain_events.relay import READERS, Relay
from domain_events.tests.probe.events import ProbeHappened
from domain_events.tests.probe.models import ProbeRecord, ProbeSwitch

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


def test_a_reader_never_passes_a_position_whose_transaction_is_still_open(settings, caplog):
    """A draws p and stays open; B draws p+1 and commits; the reader runs; then A commits.

    The reader must deliver p before p+1 and skip nothing; meanwhile the open transaction is named
    (metrics, and a warning once it has held the readers for `READER_HELD_WARNING`)."""
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "READER_HELD_WARNING": timedelta(0)}
    tracking.reset("probe.tracker", to="now")
    a_published, a_may_commit = threading.Event(), threading.Event()
    result: dict[str, object] = {}

    def slow_transaction() -> None:
        try:
            with transaction.atomic():
                result["a"] = event_bus.publish(probe(n=1))
                result["pid"] = connection.connection.info.backend_pid
                a_published.set()
                assert a_may_commit.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=slow_transaction)
    thread.start()
    try:
        assert a_published.wait(10)
        with transaction.atomic():
            b = event_bus.publish(probe(n=2))
        b_position = StoredEvent.objects.get(event_id=b.event_id).position
        assert drawn() == b_position
        with caplog.at_level(logging.WARNING, logger="domain_events.head"):
            assert head() == b_position - 2, "the head stops below A's position, p = p+1 - 1"
        assert f"pid {result['pid']}" in caplog.text
        writer, age = oldest_writer()
        assert writer.pid == result["pid"]
        assert age >= 0
        tracking.run_due(["probe.tracker"])
        assert applied("probe.tracker:live") == [], "B's p+1 waits behind A's open p"
    finally:
        a_may_commit.set()
        thread.join(10)
    a_position = StoredEvent.objects.get(event_id=result["a"].event_id).position
    assert a_position == b_position - 1
    tracking.run_due(["probe.tracker"])
    assert applied("probe.tracker:live") == [1, 2]
    assert oldest_writer() == (None, 0.0)


def applied(handler: str) -> list[int]:
    return list(ProbeRecord.objects.filter(handler=handler).order_by("id").values_list("n", flat=True))


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


def test_a_publisher_that_dispatches_itself_notifies_nobody():
    """Its fast path hands its deliveries on; the relays find new positions for the position readers
    by looking at the head (`READER_POLL_INTERVAL`)."""
    assert notifications_after(3) == []


def test_a_position_is_the_sequences_next_value_drawn_by_the_insert_itself():
    """No second write, no sequencer and no function: the column's default is the sequence. The
    fence finds the publisher by the events table's lock, which the insert holds until it ends."""
    with transaction.atomic():
        event_bus.publish(probe())
        assert holders_of_the_events_table() == [connection.connection.info.backend_pid]
    assert holders_of_the_events_table() == []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_default, is_nullable FROM information_schema.columns "
            "WHERE table_name = 'domain_events_storedevent' AND column_name = 'position'"
        )
        assert cursor.fetchone() == ("nextval('domain_events_position_seq'::regclass)", "NO")
        cursor.execute(
            "SELECT count(*) FROM pg_proc WHERE proname LIKE 'domain_events_sequence%%' "
            "OR proname = 'domain_events_next_position'"
        )
        assert cursor.fetchone()[0] == 0, "the sequencer's functions and the position function are gone"


def holders_of_the_events_table() -> list[int]:
    """The transactions the fence sees writing events, as this session looks (its own included)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT l.pid FROM pg_locks l WHERE l.locktype = 'relation' AND l.granted"
            " AND l.relation = 'domain_events_storedevent'::regclass AND l.mode = 'RowExclusiveLock'"
        )
        return [pid for (pid,) in cursor.fetchall()]


def session() -> psycopg.Connection:
    """A session of its own on the test database, outside Django's connection handling."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params)


INSERT_PROBE = """
INSERT INTO domain_events_storedevent
    (event_id, type, version, tenant_id, aggregate_id, occurred_at, recorded_at, correlation_id, causation_id, actor,
     payload)
VALUES (%(event_id)s, 'probe.happened', 1, %(tenant)s, %(probe)s, now(), now(), 'test', %(event_id)s, 'system',
        jsonb_build_object('probe_id', %(probe)s::text, 'n', %(n)s))
ON CONFLICT DO NOTHING
RETURNING position"""


def _t_waits_behind_x(tries: int = 5):
    """X inserts an event and stays open; T inserts the same event id and waits behind X. Usually
    T waits in the insert's conflict check, before it has a transaction id; now and then PostgreSQL
    takes the other path and gives T an id first: then both roll back and it is tried again."""
    for _ in range(tries):
        x, t = session(), session()
        row = {"event_id": uuid.uuid4(), "tenant": uuid.uuid4(), "probe": uuid.uuid4(), "n": 1}
        x_position = x.execute(INSERT_PROBE, row).fetchone()[0]
        t_result: list = []
        thread = threading.Thread(
            target=lambda t=t, row=row, t_result=t_result: t_result.append(
                t.execute(INSERT_PROBE, {**row, "n": 2}).fetchone()
            )
        )
        thread.start()
        deadline = time.monotonic() + 10
        while drawn() == x_position and time.monotonic() < deadline:
            time.sleep(0.01)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT backend_xid, wait_event_type FROM pg_stat_activity WHERE pid = %s", [t.info.backend_pid]
            )
            state = cursor.fetchone()
        if state == (None, "Lock"):
            break
        x.close()
        thread.join(10)
        t.close()
    return x, t, x_position, thread, t_result, state


def test_an_insert_that_drew_its_position_before_its_transaction_had_an_id_holds_the_head():
    """A transaction id is not what the fence relies on. T's insert draws its position as it
    builds its row, then waits (ON CONFLICT, behind X's event with the same id) with no transaction
    id yet; U commits the next position; X rolls back, T writes its row and stays open. A fence that
    waited for transactions with an id would have let the head pass T's position; the events
    table's lock, taken before the insert runs, names T from the start."""
    x, t, x_position, thread, t_result, state = _t_waits_behind_x()
    t_pid = t.info.backend_pid
    try:
        assert state == (None, "Lock"), "T drew its position and waits, without a transaction id"
        with transaction.atomic():
            u = event_bus.publish(probe(n=3))
        u_position = StoredEvent.objects.get(event_id=u.event_id).position
        assert u_position > x_position + 1
        assert head() < x_position
        x.rollback()
        thread.join(10)
        assert t_result == [(x_position + 1,)], "T wrote its row with the position it drew before waiting"
        assert head() < x_position + 1, "the head stops below T's open position"
        assert oldest_writer()[0].pid == t_pid
        t.commit()
        assert head() == drawn() >= u_position
    finally:
        x.close()
        thread.join(10)
        t.close()


def test_a_transaction_that_writes_no_event_does_not_hold_the_head():
    """Only a transaction that may still commit an event holds the readers back: one that writes
    elsewhere (here, a transaction with an id and nothing else) is not waited for."""
    other = session()
    try:
        other.execute("SELECT pg_current_xact_id()")
        with transaction.atomic():
            event = event_bus.publish(probe())
        assert head() == StoredEvent.objects.get(event_id=event.event_id).position
        assert oldest_writer() == (None, 0.0)
    finally:
        other.close()


def test_after_its_readers_applied_events_a_relay_looks_at_the_head_again_soon(settings):
    """Publishers usually record more while the readers apply what they found: the next look comes
    after `FENCE_RECHECK`, not `READER_POLL_INTERVAL`; once a look finds nothing new, the relay
    waits the interval again."""
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "READER_POLL_INTERVAL": 0.5}
    tracking.reset("probe.tracker", to="now")
    relay = Relay(poll_interval=2)
    relay._listen()
    relay._last_drain = time.monotonic()
    try:
        with transaction.atomic():
            event_bus.publish(probe())
        relay._move_readers()
        assert applied("probe.tracker:live") == [1]
        started = time.monotonic()
        assert relay._wait() is READERS
        assert time.monotonic() - started < 0.25, "a look at once after the readers applied events"
        relay._move_readers()
        started = time.monotonic()
        assert relay._wait() is READERS
        assert time.monotonic() - started >= 0.4, "nothing new: the next look waits the interval"
    finally:
        relay._listener.close()


def test_a_relay_waits_a_moment_for_open_positions_so_that_one_pass_takes_them(settings):
    """A draws p and commits a moment later; B draws p+1 and commits. A relay that looks while A is
    open waits for it (a reader poll interval at most) and its readers take p and p+1 in that pass,
    rather than stopping below p until the next one."""
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "READER_POLL_INTERVAL": 2}
    tracking.reset("probe.tracker", to="now")
    relay = Relay(poll_interval=2)
    a_published, relay_looks = threading.Event(), threading.Event()

    def a_moment_open() -> None:
        try:
            with transaction.atomic():
                event_bus.publish(probe(n=1))
                a_published.set()
                assert relay_looks.wait(10)
                time.sleep(0.3)
        finally:
            connection.close()

    thread = threading.Thread(target=a_moment_open)
    thread.start()
    try:
        assert a_published.wait(10)
        with transaction.atomic():
            b = event_bus.publish(probe(n=2))
        assert head() < StoredEvent.objects.get(event_id=b.event_id).position - 1, "A is still open"
        relay_looks.set()
        started = time.monotonic()
        relay._move_readers()
        assert applied("probe.tracker:live") == [1, 2]
        assert time.monotonic() - started < 1.5, "it waited for A, not for the whole interval"
    finally:
        relay_looks.set()
        thread.join(10)


def run_relay_while(relay: Relay, meanwhile, *, timeout: float) -> None:
    """Run `relay` in this thread while `meanwhile` runs in another; it stops the relay when done."""

    def then_stop() -> None:
        try:
            meanwhile()
        finally:
            relay.stop()
            connection.close()

    thread = threading.Thread(target=then_stop)
    thread.start()
    relay.run()
    thread.join(timeout)


def test_a_running_relay_moves_its_readers_while_a_slow_delivery_holds_its_loop(settings):
    """The position readers have a thread of their own: a delivery that takes seconds in the
    relay's loop does not keep the projections (the dashboard) waiting for it."""
    settings.DOMAIN_EVENTS = {
        **settings.DOMAIN_EVENTS,
        "RUN_ON_COMMIT": False,
        "READER_POLL_INTERVAL": 0.02,
        "RELAY_POLL_INTERVAL": 0.1,
    }
    tracking.reset("probe.tracker", to="now")
    ProbeSwitch.set("probe.fast:sleep:1", 4)
    relay = Relay()
    seen: dict[str, object] = {}

    def meanwhile() -> None:
        with transaction.atomic():
            event_bus.publish(probe(n=1))
        # The relay is woken at once and starts the delivery that sleeps 4 s.
        time.sleep(0.5)
        with transaction.atomic():
            event_bus.publish(probe(n=2))
        deadline = time.monotonic() + 10
        while applied("probe.tracker:live") != [1, 2] and time.monotonic() < deadline:
            time.sleep(0.02)
        seen["tracked"] = applied("probe.tracker:live")
        seen["slow delivery done"] = applied("probe.fast")

    run_relay_while(relay, meanwhile, timeout=10)
    assert seen["tracked"] == [1, 2]
    assert seen["slow delivery done"] == [], "the readers moved while the relay's loop was in the delivery"
    assert applied("probe.fast")[:1] == [1], "the relay's loop was in that delivery"


def test_a_running_relay_retries_a_failed_reader_when_nothing_new_comes(settings):
    """A reader that failed waits for its retry time; the head may never move again to wake it, so
    the readers' thread gives every reader a pass once a poll interval all the same."""
    settings.HANDLER_RETRY_SCHEDULE = [1]
    settings.DOMAIN_EVENTS = {
        **settings.DOMAIN_EVENTS,
        "RETRY_JITTER": 0,
        "READER_POLL_INTERVAL": 0.02,
        "RELAY_POLL_INTERVAL": 0.2,
    }
    tracking.reset("probe.tracker", to="now")
    ProbeSwitch.set("probe.tracker:fail")
    with transaction.atomic():
        event_bus.publish(probe(n=1))
    relay = Relay()
    seen: dict[str, object] = {}

    def meanwhile() -> None:
        deadline = time.monotonic() + 10
        while not Checkpoint.objects.filter(name="probe.tracker", attempts__gte=1).exists():
            assert time.monotonic() < deadline, "the reader never failed"
            time.sleep(0.02)
        ProbeSwitch.objects.filter(name="probe.tracker:fail").delete()
        deadline = time.monotonic() + 10
        while applied("probe.tracker:live") != [1] and time.monotonic() < deadline:
            time.sleep(0.05)
        seen["tracked"] = applied("probe.tracker:live")

    run_relay_while(relay, meanwhile, timeout=15)
    assert seen["tracked"] == [1]


def test_an_idle_relay_looks_for_new_positions_and_wakes_fully_for_delivery_work():
    relay = Relay(poll_interval=2)
    relay._listen()
    relay._last_drain = time.monotonic()
    try:
        started = time.monotonic()
        assert relay._wait() is READERS, "position readers: a look at the head is due"
        assert time.monotonic() - started < 1
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify('shelfwise_outbox', '')")
        assert relay._wait() is True, "delivery work wakes the whole pass"
    finally:
        relay._listener.close()
