"""Position readers: every matching event once, in position order, with the checkpoint committed
together with the reader's writes; start from the beginning or from now; reset; second tables; lag."""

import threading
import uuid
from decimal import Decimal

import pytest
from django.db import connection, transaction

from domain_events import reader_lag, tracking
from domain_events.bus import event_bus
from domain_events.events import OrderPlaced
from domain_events.head import head
from domain_events.models import Checkpoint, ParkedEvent, StoredEvent
from domain_events.relay import Relay, _lead_readers
from domain_events.subscriptions import subscriptions
from domain_events.tests.probe.events import ProbeFollowedUp, ProbeHappened
from domain_events.tests.probe.models import ProbeRecord, ProbeSwitch

pytestmark = pytest.mark.django_db(transaction=True)

READER = "probe.tracker"


def publish(n: int) -> ProbeHappened:
    with transaction.atomic():
        return event_bus.publish(ProbeHappened(tenant_id=uuid.uuid4(), probe_id=uuid.uuid4(), n=n))


def seen(target: str = "live") -> list[int]:
    return list(
        ProbeRecord.objects.filter(handler=f"probe.tracker:{target}").order_by("id").values_list("n", flat=True)
    )


def test_a_reader_gets_every_matching_event_once_in_position_order_in_batches():
    for n in range(7):
        publish(n)
    with transaction.atomic():
        event_bus.publish(ProbeFollowedUp(tenant_id=uuid.uuid4(), probe_id=uuid.uuid4(), n=99))  # not its type
    assert tracking.read_batch(READER) == 3, "batches of the reader's batch size"
    assert tracking.catch_up(READER) == 4
    assert seen() == list(range(7))
    assert tracking.catch_up(READER) == 0, "a second run applies nothing again"
    assert seen() == list(range(7))
    lag = reader_lag.lag(READER)
    assert lag.positions == 0
    assert lag.seconds == 0
    assert Checkpoint.objects.get(name=READER).position == StoredEvent.objects.latest("position").position


def test_a_reader_is_told_the_position_of_each_event_of_its_batch():
    batches = []
    for n in range(4):
        publish(n)
    tracker = tracking.subscriptions.tracker(READER)
    original = tracker.handler
    # Trackers are frozen records; the test swaps the probe's handler for one run.
    object.__setattr__(tracker, "handler", lambda events, context: batches.append((events, context)))
    try:
        tracking.catch_up(READER)
    finally:
        object.__setattr__(tracker, "handler", original)
    positions = list(
        StoredEvent.objects.filter(type="probe.happened").order_by("position").values_list("position", flat=True)
    )
    assert [context.positions[e.event_id] for events, context in batches for e in events] == positions
    assert all(context.after < context.positions[events[0].event_id] for events, context in batches)


def test_a_failing_batch_rolls_back_its_writes_with_its_checkpoint_and_is_retried():
    for n in range(2):
        publish(n)
    ProbeSwitch.set("probe.tracker:fail")
    Relay().drain()
    assert seen() == [], "the failed batch's writes were rolled back"
    checkpoint = Checkpoint.objects.get(name=READER)
    assert checkpoint.position == 0
    assert checkpoint.attempts == 1
    assert "told to fail" in checkpoint.last_error
    assert checkpoint.retry_at is not None
    lag = reader_lag.lag(READER)
    assert lag.position == 0
    assert lag.positions == lag.head > 0
    assert lag.last_error

    ProbeSwitch.objects.all().delete()
    Checkpoint.objects.filter(name=READER).update(retry_at=None)
    Relay().drain()
    assert seen() == [0, 1]
    assert Checkpoint.objects.get(name=READER).attempts == 0


def test_a_reader_can_start_from_now_be_reset_and_replay_into_a_second_set_of_tables():
    publish(0)
    publish(1)
    assert tracking.reset(READER, to="now") > 0
    publish(2)
    tracking.catch_up(READER)
    assert seen() == [2], "started from now"

    tracking.reset(READER, target="rebuild")
    rebuild_lag = reader_lag.lag(READER, target="rebuild")
    assert rebuild_lag.position == 0
    assert rebuild_lag.positions == rebuild_lag.head
    tracking.catch_up(READER, target="rebuild")
    assert seen("rebuild") == [0, 1, 2]
    assert seen() == [2], "the live tables were left alone"
    assert Checkpoint.objects.filter(name="probe.tracker@rebuild").exists()


def test_an_unknown_reader_is_refused():
    with pytest.raises(LookupError, match="no position reader"):
        tracking.reset("nope")


def test_relays_catch_readers_up_and_lag_is_listed_for_every_reader():
    publish(0)
    assert {lag.name: lag.positions for lag in reader_lag.lags()}[READER] >= 1
    Relay().drain()
    assert seen() == [0]
    lags = {lag.name: lag.positions for lag in reader_lag.lags()}
    assert lags[READER] == 0
    assert set(lags) >= {READER, "audit.chain"}, "every subscribed reader is listed"


def test_a_reader_far_behind_does_not_hold_up_a_relays_deliveries(settings):
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
    for n in range(40):
        publish(n)
    relay = Relay()
    relay.drain()
    assert len(seen()) == tracking.BATCHES_PER_PASS * 3, "batches of 3, a bounded number per pass"
    assert ProbeRecord.objects.filter(handler="probe.fast").count() == 40, "deliveries went on meanwhile"
    assert relay.readers_behind
    while relay.readers_behind:
        relay.drain()
    assert seen() == list(range(40))


def test_a_stored_event_that_cannot_be_read_is_parked_with_its_error_and_the_reader_goes_on(operator_admin):
    publish(1)
    bad = publish(2)
    publish(3)
    # A stored payload that no longer fits its class (written by a broken release, say).
    StoredEvent.objects.filter(event_id=bad.event_id).update(payload={"probe_id": "not-a-uuid"})
    tracking.catch_up(READER)
    assert seen() == [1, 3], "the readable events are applied, in order"
    parked = ParkedEvent.objects.get(reader=READER)
    stored = StoredEvent.objects.get(event_id=bad.event_id)
    assert (parked.position, parked.stored_event_id) == (stored.position, stored.pk)
    assert f"#{stored.pk}" in parked.error
    checkpoint = Checkpoint.objects.get(name=READER)
    assert checkpoint.position == StoredEvent.objects.latest("position").position
    assert checkpoint.attempts == 0, "nothing failed: the reader is not held back"
    listed = operator_admin.get("/admin/domain_events/parkedevent/")
    assert listed.status_code == 200
    assert f"#{stored.pk}".encode() in listed.content


def test_a_readers_error_and_its_log_line_mask_the_private_values_of_its_batch(caplog):
    """A reader whose handler quotes a payment token: the checkpoint's error and the log line show
    it masked (operators read both)."""

    def quote_the_token(events, context) -> None:
        raise RuntimeError(f"cannot project a payment with {events[0].payment_token}")

    name = "test.token_quoting_reader"
    event_bus.track(OrderPlaced, quote_the_token, name=name)
    try:
        with transaction.atomic():
            event_bus.publish(
                OrderPlaced(
                    tenant_id=uuid.uuid4(),
                    order_id=uuid.uuid4(),
                    customer_id=uuid.uuid4(),
                    lines=(),
                    total_amount=Decimal("1.00"),
                    currency="USD",
                    payment_token="pm_card_SECRET123",
                )
            )
        tracking.run_due([name])
    finally:
        subscriptions.remove_tracker(name)
    error = Checkpoint.objects.get(name=name).last_error
    assert error == "RuntimeError: cannot project a payment with ••••T123"
    assert "cannot project a payment with ••••T123" in caplog.text
    assert "pm_card_SECRET123" not in caplog.text


def test_a_pass_over_readers_with_nothing_to_read_takes_a_statement_or_two(django_assert_num_queries):
    """A relay looks at its readers every few milliseconds: those at the head cost it one look at
    every checkpoint, and one with none of its events below the head moves there in one statement."""
    publish(0)
    tracking.run_due()
    top = head()
    with django_assert_num_queries(1):
        assert tracking.advance(top=top) == (0, False)
    with transaction.atomic():
        event_bus.publish(ProbeFollowedUp(tenant_id=uuid.uuid4(), probe_id=uuid.uuid4(), n=99))  # not its type
    top = head()
    with django_assert_num_queries(1 + 3):
        tracking.advance([READER], top=top)
    assert Checkpoint.objects.get(name=READER).position == top


def test_one_relay_at_a_time_holds_the_readers_lock_and_another_takes_it_when_it_goes():
    """Relays side by side: one moves the position readers at their pace, the others look only
    once a poll interval, until the one holding the lock is gone."""
    tries: list[bool] = []

    def another_relay() -> None:
        try:
            tries.append(_lead_readers())
        finally:
            connection.close()

    assert _lead_readers()
    thread = threading.Thread(target=another_relay)
    thread.start()
    thread.join(10)
    connection.close()  # this relay's readers connection ends, and its lock with it
    thread = threading.Thread(target=another_relay)
    thread.start()
    thread.join(10)
    assert tries == [False, True]
