"""Dispatch: the fast path, isolation of failures, retries, dead letters, redrive, ordering, once-only."""

import uuid
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.utils import timezone

from domain_events import partitions
from domain_events.bus import event_bus
from domain_events.claims import Claim
from domain_events.context import traced
from domain_events.executor import execute
from domain_events.models import Delivery, StoredEvent
from domain_events.relay import Relay
from domain_events.tests.probe.events import ProbeHappened
from domain_events.tests.probe.models import ProbeRecord, ProbeSwitch

pytestmark = pytest.mark.django_db(transaction=True)


def publish(n: int = 1, probe_id: uuid.UUID | None = None, tenant_id: uuid.UUID | None = None) -> ProbeHappened:
    with transaction.atomic():
        return event_bus.publish(
            ProbeHappened(tenant_id=tenant_id or uuid.uuid4(), probe_id=probe_id or uuid.uuid4(), n=n)
        )


def deliveries(event: ProbeHappened, handler: str) -> Delivery:
    return Delivery.objects.get(stored_event__event_id=event.event_id, handler=handler)


def make_due(*handlers: str) -> None:
    """Pretend the fast path was lost: the deliveries' grace period is over."""
    qs = Delivery.objects.filter(status__in=Delivery.OPEN)
    if handlers:
        qs = qs.filter(handler__in=handlers)
    qs.update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def relay_once() -> None:
    Relay(batch_size=50).drain()


def test_on_commit_handlers_run_right_after_the_commit_each_once():
    event = publish()
    assert set(ProbeRecord.objects.filter(event_id=event.event_id).values_list("handler", flat=True)) == {
        "probe.fast",
        "probe.other",
    }
    assert deliveries(event, "probe.fast").status == Delivery.Status.SUCCEEDED
    assert deliveries(event, "probe.fast").attempts == 1
    # The celery-mode delivery waits for a worker; nothing ran it here.
    assert deliveries(event, "probe.slow").status == Delivery.Status.PENDING


def test_a_failing_handler_neither_hurts_the_publisher_nor_the_other_handlers():
    ProbeSwitch.set("probe.fast:fail")
    event = publish()
    assert StoredEvent.objects.filter(event_id=event.event_id).exists()
    assert ProbeRecord.objects.filter(event_id=event.event_id, handler="probe.other").count() == 1
    assert not ProbeRecord.objects.filter(event_id=event.event_id, handler="probe.fast").exists()
    failed = deliveries(event, "probe.fast")
    assert failed.status == Delivery.Status.FAILED
    assert failed.attempts == 1
    assert "told to fail" in failed.last_error
    assert failed.next_attempt_at > timezone.now()


def test_a_poison_event_goes_dead_after_its_schedule_and_a_redrive_after_the_fix_succeeds(settings):
    settings.HANDLER_RETRY_SCHEDULE = [1, 1]
    ProbeSwitch.set("probe.fast:fail")
    event = publish()
    for _ in range(2):
        make_due("probe.fast")
        relay_once()
    dead = deliveries(event, "probe.fast")
    assert dead.status == Delivery.Status.DEAD
    assert dead.attempts == 3
    # Dead stays dead: the relay does not pick it up again.
    make_due("probe.fast")
    relay_once()
    assert deliveries(event, "probe.fast").attempts == 3

    ProbeSwitch.objects.all().delete()
    call_command("redrive_dead_letters", "--handler", "probe.fast")
    redriven = deliveries(event, "probe.fast")
    assert redriven.status == Delivery.Status.SUCCEEDED
    assert ProbeRecord.objects.filter(event_id=event.event_id, handler="probe.fast").count() == 1


def test_redrive_by_event_id_leaves_other_dead_deliveries_alone(settings):
    settings.HANDLER_RETRY_SCHEDULE = []
    ProbeSwitch.set("probe.fast:fail")
    first, second = publish(n=1), publish(n=2)
    assert deliveries(first, "probe.fast").status == Delivery.Status.DEAD
    ProbeSwitch.objects.all().delete()
    call_command("redrive_dead_letters", "--event-id", str(second.event_id))
    assert deliveries(first, "probe.fast").status == Delivery.Status.DEAD
    assert deliveries(second, "probe.fast").status == Delivery.Status.SUCCEEDED


def test_forced_redelivery_applies_an_event_once():
    event = publish()
    delivery = deliveries(event, "probe.fast")
    # Hand the same delivery on again and again, with the token it had and with fresh claims.
    report = execute([Claim(delivery.pk, uuid.uuid4(), "probe.fast")])
    assert report.succeeded == 0
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    relay_once()
    relay_once()
    assert ProbeRecord.objects.filter(event_id=event.event_id, handler="probe.fast").count() == 1


def test_a_lost_fast_path_is_made_good_by_the_relay(settings):
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
    event = publish()
    assert not ProbeRecord.objects.filter(event_id=event.event_id).exists()
    relay_once()
    assert ProbeRecord.objects.filter(event_id=event.event_id, handler="probe.fast").count() == 1
    assert deliveries(event, "probe.fast").status == Delivery.Status.SUCCEEDED


def test_later_events_of_an_aggregate_wait_behind_a_failing_one():
    probe_id = uuid.uuid4()
    tenant_id = uuid.uuid4()
    ProbeSwitch.set("probe.fast:fail:1")
    publish(n=1, probe_id=probe_id, tenant_id=tenant_id)
    second = publish(n=2, probe_id=probe_id, tenant_id=tenant_id)
    waiting = deliveries(second, "probe.fast")
    assert waiting.status == Delivery.Status.PENDING
    assert "earlier event" in waiting.last_error
    assert not ProbeRecord.objects.filter(handler="probe.fast").exists()
    # The other handler has no failure on this aggregate and is not held up.
    assert ProbeRecord.objects.filter(handler="probe.other").count() == 2

    ProbeSwitch.objects.all().delete()
    for _ in range(3):
        make_due("probe.fast")
        relay_once()
    order = list(ProbeRecord.objects.filter(handler="probe.fast").order_by("id").values_list("n", flat=True))
    assert order == [1, 2]


def test_events_published_by_a_handler_carry_its_correlation_and_causation():
    with traced("checkout-42"):
        event = publish(n=1000)
    followed = ProbeRecord.objects.get(handler="probe.followed")
    assert followed.correlation_id == "checkout-42"
    assert followed.causation_id == event.event_id


def test_relay_once_command_reports_what_it_handed_on(settings, capsys):
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
    publish()
    call_command("run_outbox_relay", "--once")
    out = capsys.readouterr().out
    assert "3 succeeded" in out
    assert "1 sent to workers" in out


def test_succeeded_deliveries_are_pruned_after_the_retention_but_events_are_kept(settings):
    event = publish()
    # Recorded and finished (as if) in a month over for longer than the retention: where the tables
    # are partitioned by month, succeeded deliveries go with their event's month.
    long_ago = datetime(2026, 4, 10, tzinfo=UTC)
    StoredEvent.objects.filter(event_id=event.event_id).update(recorded_at=long_ago)
    Delivery.objects.filter(stored_event__event_id=event.event_id).update(event_recorded_at=long_ago)
    Delivery.objects.filter(status=Delivery.Status.SUCCEEDED).update(completed_at=long_ago)
    try:
        pruned = Relay().prune()
        assert pruned == 3
        assert StoredEvent.objects.filter(event_id=event.event_id).exists()
        assert deliveries(event, "probe.slow").status == Delivery.Status.PENDING
    finally:
        for table in partitions.KEYS:
            partitions.drop_month(table=table, month=date(2026, 4, 1))


def test_a_malformed_stored_event_fails_its_deliveries_with_a_clear_error_and_the_relay_goes_on(settings):
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
    broken, healthy = publish(n=1), publish(n=2)
    StoredEvent.objects.filter(event_id=broken.event_id).update(payload={"probe_id": "not-a-uuid"})
    relay_once()
    failed = deliveries(broken, "probe.fast")
    assert failed.status == Delivery.Status.FAILED
    assert f"stored event #{failed.stored_event_id}" in failed.last_error
    assert "probe_id" in failed.last_error
    assert deliveries(healthy, "probe.fast").status == Delivery.Status.SUCCEEDED


def test_an_unknown_stored_type_is_reported_not_crashed_on(settings):
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
    event = publish()
    StoredEvent.objects.filter(event_id=event.event_id).update(type="probe.vanished")
    relay_once()
    assert "unknown event type 'probe.vanished'" in deliveries(event, "probe.fast").last_error


def test_a_handler_writing_a_dangling_foreign_key_fails_alone():
    ProbeSwitch.set("probe.fast:dangling")
    event = publish()
    assert deliveries(event, "probe.fast").status == Delivery.Status.FAILED
    assert "foreign key" in deliveries(event, "probe.fast").last_error.lower()
    assert deliveries(event, "probe.other").status == Delivery.Status.SUCCEEDED
    assert ProbeRecord.objects.filter(event_id=event.event_id, handler="probe.other").count() == 1


def test_events_published_by_handlers_still_get_commit_order_positions():
    event = publish(n=1000)
    followed = StoredEvent.objects.get(type="probe.followed_up")
    assert followed.position > StoredEvent.objects.get(event_id=event.event_id).position


def test_redrive_refuses_a_malformed_event_id():
    with pytest.raises(CommandError, match="not a UUID"):
        call_command("redrive_dead_letters", "--event-id", "not-a-uuid")


def test_with_run_on_commit_off_the_publisher_sends_celery_messages_and_leaves_its_handlers_to_a_relay(settings):
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "RUN_ON_COMMIT": False}
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    listener = psycopg.connect(**params, autocommit=True)
    try:
        listener.execute(f"LISTEN {settings.DOMAIN_EVENTS.get('NOTIFY_CHANNEL', 'shelfwise_outbox')}")
        event = publish()
        woken = list(listener.notifies(timeout=2, stop_after=1))
    finally:
        listener.close()
    assert woken, "the commit wakes the relays"
    assert not ProbeRecord.objects.filter(event_id=event.event_id).exists(), "nothing ran in the publisher"
    fast = deliveries(event, "probe.fast")
    assert (fast.status, fast.attempts) == (Delivery.Status.PENDING, 0)
    assert fast.next_attempt_at <= timezone.now(), "due for the relays at once, no grace period"
    slow = deliveries(event, "probe.slow")
    assert slow.sent_at is not None, "the publisher sends the Celery message"

    relay_once()
    ran = set(ProbeRecord.objects.filter(event_id=event.event_id).values_list("handler", flat=True))
    assert {"probe.fast", "probe.other"} <= ran
    assert deliveries(event, "probe.fast").status == Delivery.Status.SUCCEEDED
