"""No deadlock, no stall, no unbounded transaction: interleaved batches finish, LISTEN comes back,
and every transaction and Celery task has a time limit."""

import threading
import uuid

import pytest
from django.db import connection, connections, transaction

from domain_events.bus import event_bus
from domain_events.claims import Claim
from domain_events.executor import execute
from domain_events.models import Delivery
from domain_events.relay import Relay
from domain_events.tasks import run_delivery
from domain_events.tests.probe.events import ProbeHappened
from domain_events.tests.probe.models import ProbeRecord, ProbeSwitch

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_relays_with_interleaved_batches_on_the_same_rows_both_finish_without_counting_attempts(settings):
    """Batch A locks row a then row b; batch B locks row b then row a: PostgreSQL breaks the deadlock
    by failing one, which then runs one delivery per transaction and counts no attempt."""
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
    ProbeSwitch.set("row-a")
    ProbeSwitch.set("row-b")
    ProbeSwitch.set("probe.fast:interleave")
    events = []
    for n in range(4):
        with transaction.atomic():
            events.append(event_bus.publish(ProbeHappened(tenant_id=uuid.uuid4(), probe_id=uuid.uuid4(), n=n)))
    ids = {e.n: Delivery.objects.get(stored_event__event_id=e.event_id, handler="probe.fast").pk for e in events}
    # Relay A holds a lease on n=0 (row a) and n=2 (row b); relay B on n=1 (row b) and n=3 (row a).
    Delivery.objects.exclude(handler="probe.fast").update(status="succeeded")
    reports = {}

    def relay(name: str, mine: list[int]) -> None:
        try:
            token = uuid.uuid4()
            Delivery.objects.filter(pk__in=mine).update(lease_token=token)
            reports[name] = execute([Claim(pk, token, "probe.fast") for pk in mine])
        finally:
            connection.close()

    a = threading.Thread(target=relay, args=("a", [ids[0], ids[2]]))
    b = threading.Thread(target=relay, args=("b", [ids[1], ids[3]]))
    a.start()
    b.start()
    a.join(30)
    b.join(30)
    assert reports["a"].succeeded + reports["b"].succeeded == 4
    rows = Delivery.objects.filter(handler="probe.fast")
    assert set(rows.values_list("status", flat=True)) == {"succeeded"}
    assert set(rows.values_list("attempts", flat=True)) == {1}, "a deadlock is not the handler's attempt"
    assert ProbeRecord.objects.filter(handler="probe.fast").count() == 4


def test_a_lost_listen_connection_comes_back_after_failed_reconnects(monkeypatch):
    relay = Relay(poll_interval=0.05)
    relay._listen()
    assert relay._listener is not None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [relay._listener.info.backend_pid])

    database = connections["default"]
    real_params = database.get_connection_params

    def unreachable():
        return {**real_params(), "port": 1}

    monkeypatch.setattr(database, "get_connection_params", unreachable)
    assert relay._wait() is True
    assert relay._listener is None, "the server is unreachable: the relay polls"
    for _ in range(3):  # keeps failing: the backoff grows, the relay keeps trying
        relay._listen_retry_at = 0
        relay._wait()
    assert relay._listener is None
    assert relay._listen_backoff > 0.05

    monkeypatch.undo()
    relay._listen_retry_at = 0
    relay._wait()
    assert relay._listener is not None, "the relay listens again once the server is back"
    with connection.cursor() as cursor:
        cursor.execute("NOTIFY shelfwise_outbox")
    assert relay._wait() is True
    relay._listener.close()


def test_transactions_and_celery_deliveries_are_bounded_in_time():
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] != "0"
        cursor.execute("SHOW idle_in_transaction_session_timeout")
        assert cursor.fetchone()[0] != "0"
    assert run_delivery.time_limit
    assert 0 < run_delivery.soft_time_limit < run_delivery.time_limit


def test_a_statement_past_the_timeout_is_cancelled():
    with pytest.raises(Exception, match="statement timeout"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 50")
        cursor.execute("SELECT pg_sleep(1)")
