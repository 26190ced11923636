"""Per-aggregate order is commit order, by revision, on every path; dead letters hold their aggregate back;
a held delivery is not polled."""

import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from domain_events import tracking
from domain_events.bus import event_bus
from domain_events.deadletters import skip
from domain_events.models import UNTIL_RELEASED, Delivery, StoredEvent
from domain_events.outcomes import mark_succeeded
from domain_events.relay import Relay
from domain_events.tests.probe.events import ProbeHappened
from domain_events.tests.probe.models import ProbeRecord, ProbeSwitch
from testsupport.outbox import run_deliveries_now

pytestmark = pytest.mark.django_db(transaction=True)

TENANT = uuid.uuid4()


def publish(n: int, probe_id: uuid.UUID) -> ProbeHappened:
    with transaction.atomic():
        return event_bus.publish(ProbeHappened(tenant_id=TENANT, probe_id=probe_id, n=n))


def delivery(event: ProbeHappened, handler: str = "probe.fast") -> Delivery:
    return Delivery.objects.get(stored_event__event_id=event.event_id, handler=handler)


def applied(handler: str) -> list[int]:
    return list(ProbeRecord.objects.filter(handler=handler).order_by("id").values_list("n", flat=True))


def by_position(probe_id: uuid.UUID) -> list[int]:
    rows = StoredEvent.objects.filter(aggregate_id=probe_id).order_by("position").values_list("payload", flat=True)
    return [p["n"] for p in rows]


def started_first_commits_last(probe_id: uuid.UUID) -> None:
    """Transaction 1 starts (and writes) first; transaction 2 records n=2 and commits; then 1 records
    n=1 and commits: the aggregate's order is its commit order, not the order its writers started."""
    started, may_go_on = threading.Event(), threading.Event()

    def first() -> None:
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_current_xact_id()")
                started.set()
                assert may_go_on.wait(10)
                event_bus.publish(ProbeHappened(tenant_id=TENANT, probe_id=probe_id, n=1))
        finally:
            connection.close()

    thread = threading.Thread(target=first)
    thread.start()
    assert started.wait(10)
    publish(2, probe_id)
    may_go_on.set()
    thread.join(10)


def revisions(probe_id: uuid.UUID) -> list[tuple[int, int]]:
    """(n, revision) of the aggregate's events, by position."""
    rows = StoredEvent.objects.filter(aggregate_id=probe_id).order_by("position").values_list("payload", "revision")
    return [(p["n"], r) for p, r in rows]


def test_on_the_fast_path_the_first_to_start_but_last_to_commit_comes_second():
    probe_id = uuid.uuid4()
    started_first_commits_last(probe_id)
    assert revisions(probe_id) == [(2, 1), (1, 2)], "n=2 committed first"
    assert applied("probe.fast") == [2, 1]
    assert applied("probe.other") == [2, 1]
    assert list(
        Delivery.objects.filter(aggregate_id=probe_id, handler="probe.fast")
        .order_by("revision")
        .values_list("stored_event__payload__n", flat=True)
    ) == [2, 1]


def test_a_second_transaction_on_an_aggregate_waits_for_the_first_to_end():
    """The stream row is the one lock both share: insert order per aggregate is commit order."""
    probe_id = uuid.uuid4()
    recorded, may_commit = threading.Event(), threading.Event()

    def first() -> None:
        try:
            with transaction.atomic():
                event_bus.publish(ProbeHappened(tenant_id=TENANT, probe_id=probe_id, n=1))
                recorded.set()
                assert may_commit.wait(10)
        finally:
            connection.close()

    def second() -> None:
        try:
            publish(2, probe_id)
        finally:
            connection.close()

    one, two = threading.Thread(target=first), threading.Thread(target=second)
    one.start()
    assert recorded.wait(10)
    two.start()
    waiting = wait_for_lock_waiters(1)
    assert waiting == 1, "the second publisher waits on the aggregate's stream row"
    may_commit.set()
    one.join(10)
    two.join(10)
    assert revisions(probe_id) == [(1, 1), (2, 2)]
    # n=2 may have committed while n=1 still ran: then it waits behind it for a relay.
    run_deliveries_now("probe.fast")
    assert applied("probe.fast") == [1, 2]


def wait_for_lock_waiters(count: int, timeout: float = 5.0) -> int:
    """How many sessions of this database wait on a lock, once `count` do (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            found = cursor.fetchone()[0]
        if found >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def test_relays_and_position_readers_apply_an_aggregate_in_position_order(settings):
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
    probe_id = uuid.uuid4()
    started_first_commits_last(probe_id)
    Relay(batch_size=50).drain()
    order = by_position(probe_id)
    assert order == [2, 1], "n=2 committed first"
    assert applied("probe.fast") == order
    assert applied("probe.tracker:live") == order
    # The Celery path: what a worker does with the relay's claims.
    run_deliveries_now("probe.slow")
    assert applied("probe.slow") == order
    # A replay into a second set of tables follows the same order.
    tracking.reset("probe.tracker", target="rebuild")
    tracking.catch_up("probe.tracker", target="rebuild")
    assert applied("probe.tracker:rebuild") == order


def test_a_dead_letter_holds_back_its_aggregate_until_redriven(settings):
    settings.HANDLER_RETRY_SCHEDULE = []
    probe_id = uuid.uuid4()
    ProbeSwitch.set("probe.fast:fail:1")
    first = publish(1, probe_id)
    assert delivery(first).status == Delivery.Status.DEAD
    second = publish(2, probe_id)
    held = delivery(second)
    assert held.status == Delivery.Status.PENDING
    assert held.held_by == delivery(first).pk
    assert held.next_attempt_at == UNTIL_RELEASED
    assert "held by a dead letter" in held.last_error
    Relay(batch_size=50).drain()
    assert applied("probe.fast") == []
    # Another aggregate is not held up.
    publish(3, uuid.uuid4())
    assert applied("probe.fast") == [3]

    ProbeSwitch.objects.filter(name="probe.fast:fail:1").delete()
    call_command("redrive_dead_letters", "--handler", "probe.fast")
    assert delivery(first).status == Delivery.Status.SUCCEEDED
    released = delivery(second)
    assert released.held_by is None
    assert released.next_attempt_at <= timezone.now()
    Relay(batch_size=50).drain()
    assert applied("probe.fast") == [3, 1, 2]


def test_skipping_a_dead_letter_records_why_and_releases_its_aggregate(settings):
    settings.HANDLER_RETRY_SCHEDULE = []
    probe_id = uuid.uuid4()
    ProbeSwitch.set("probe.fast:fail:1")
    first = publish(1, probe_id)
    second = publish(2, probe_id)
    assert delivery(second).held_by == delivery(first).pk

    assert skip(Delivery.objects.filter(pk=delivery(first).pk), reason="refunded by hand", by="sam") == 1
    skipped = delivery(first)
    assert skipped.status == Delivery.Status.SKIPPED
    assert "sam" in skipped.resolution
    assert "refunded by hand" in skipped.resolution
    Relay(batch_size=50).drain()
    assert applied("probe.fast") == [2]
    with pytest.raises(ValueError, match="reason"):
        skip(Delivery.objects.all(), reason="  ", by="sam")


def test_a_held_delivery_sleeps_until_its_blocker_is_due_and_wakes_when_it_succeeds(settings):
    settings.HANDLER_RETRY_SCHEDULE = [60]
    probe_id = uuid.uuid4()
    ProbeSwitch.set("probe.fast:fail:1")
    first = publish(1, probe_id)
    blocker = delivery(first)
    assert blocker.status == Delivery.Status.FAILED
    second = publish(2, probe_id)
    held = delivery(second)
    # Not a poll: it is not due again before its blocker's next attempt.
    assert held.next_attempt_at >= blocker.next_attempt_at - timedelta(milliseconds=1)
    assert held.next_attempt_at > timezone.now() + timedelta(seconds=30)
    updated = held.updated_at
    Relay(batch_size=50).drain()
    assert delivery(second).updated_at == updated, "a relay pass must not touch a held delivery"

    ProbeSwitch.objects.filter(name="probe.fast:fail:1").delete()
    Delivery.objects.filter(pk=blocker.pk).update(next_attempt_at=timezone.now())
    Relay(batch_size=50).drain()
    assert delivery(first).status == Delivery.Status.SUCCEEDED
    Relay(batch_size=50).drain()
    assert delivery(second).status == Delivery.Status.SUCCEEDED
    assert applied("probe.fast") == [1, 2]


def test_the_admin_shows_held_deliveries_and_staff_skip_a_dead_letter_with_a_reason(staff_admin, tenant, settings):
    settings.HANDLER_RETRY_SCHEDULE = []
    probe_id = uuid.uuid4()
    ProbeSwitch.set("probe.fast:fail:1")
    with transaction.atomic():
        first = event_bus.publish(ProbeHappened(tenant_id=tenant.id, probe_id=probe_id, n=1))
    with transaction.atomic():
        second = event_bus.publish(ProbeHappened(tenant_id=tenant.id, probe_id=probe_id, n=2))
    page = staff_admin.get("/admin/domain_events/delivery/?held=dead").content.decode()
    assert f"held by a dead letter (#{delivery(first).pk})" in page
    dead_pk = delivery(first).pk

    url = "/admin/domain_events/delivery/"
    form = staff_admin.post(url, {"action": "skip_selected", "_selected_action": [dead_pk]})
    assert form.status_code == 200
    assert "Say why" in form.content.decode()
    refused = staff_admin.post(url, {"action": "skip_selected", "_selected_action": [dead_pk], "apply": "1"})
    assert refused.status_code == 200, "no reason: the form comes back"
    assert delivery(first).status == Delivery.Status.DEAD
    done = staff_admin.post(
        url, {"action": "skip_selected", "_selected_action": [dead_pk], "apply": "1", "reason": "customer refunded"}
    )
    assert done.status_code == 302
    assert delivery(first).status == Delivery.Status.SKIPPED
    assert "customer refunded" in delivery(first).resolution
    assert delivery(second).held_by is None


def test_a_delivery_held_while_its_blocker_commits_its_success_is_released_at_once(settings):
    """The blocker's success releases the holds it can see; a hold written in the moment it commits
    is not among them, and must not sleep until the blocker's lease would have run out."""
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
    probe_id = uuid.uuid4()
    first, second = publish(1, probe_id), publish(2, probe_id)
    blocker = delivery(first)
    # The blocker is out with a worker: not due again before its lease runs out.
    Delivery.objects.filter(pk=blocker.pk).update(next_attempt_at=timezone.now() + timedelta(seconds=40))
    succeeded, may_commit = threading.Event(), threading.Event()

    def blocker_succeeds() -> None:
        try:
            with transaction.atomic():
                list(Delivery.objects.select_for_update().filter(pk=blocker.pk))
                mark_succeeded([blocker.pk], timezone.now())
                succeeded.set()
                may_commit.wait(10)
        finally:
            connection.close()

    def commit_once_someone_waits() -> None:
        try:
            wait_for_lock_waiters(1, timeout=3)
        finally:
            may_commit.set()
            connection.close()

    finishing = threading.Thread(target=blocker_succeeds)
    finishing.start()
    assert succeeded.wait(10)
    watcher = threading.Thread(target=commit_once_someone_waits)
    watcher.start()
    Relay(batch_size=50).drain()
    finishing.join(10)
    watcher.join(10)

    follower = delivery(second)
    assert follower.held_by is None
    assert follower.next_attempt_at <= timezone.now()
    Relay(batch_size=50).drain()
    assert applied("probe.fast") == [2]
