"""Retention: succeeded, skipped, dead and orphaned deliveries each have a rule; one relay prunes at
a time; the notification channel is the configured one."""

import uuid
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from django.db import connection, transaction
from django.utils import timezone

from domain_events import partitions, sql, subscribers
from domain_events.bus import event_bus
from domain_events.models import Delivery, StoredEvent, Subscriber
from domain_events.relay import Relay
from domain_events.tests.probe.events import ProbeHappened
from domain_events.tests.probe.models import ProbeSwitch

pytestmark = pytest.mark.django_db(transaction=True)


def publish(n: int = 1) -> ProbeHappened:
    with transaction.atomic():
        return event_bus.publish(ProbeHappened(tenant_id=uuid.uuid4(), probe_id=uuid.uuid4(), n=n))


def test_dead_letters_and_orphaned_deliveries_are_pruned_after_their_own_retention(settings):
    settings.HANDLER_RETRY_SCHEDULE = []
    ProbeSwitch.set("probe.fast:fail")
    event = publish()
    dead = Delivery.objects.get(stored_event__event_id=event.event_id, handler="probe.fast")
    assert dead.status == "dead"
    subscribers.register()
    Subscriber.objects.create(
        name="probe.retired", mode="on_commit", first_position=0, covered_position=0, last_seen_at=timezone.now()
    )
    stored = StoredEvent.objects.get(event_id=event.event_id)
    orphan = Delivery.objects.create(
        stored_event=stored,
        handler="probe.retired",
        event_type=stored.type,
        tenant_id=stored.tenant_id,
        aggregate_id=stored.aggregate_id,
        next_attempt_at=timezone.now(),
    )
    Relay().prune()
    assert Delivery.objects.filter(pk__in=[dead.pk, orphan.pk]).count() == 2, "young: kept and visible"

    old = timezone.now() - timedelta(days=31)
    Delivery.objects.filter(pk=dead.pk).update(updated_at=old)
    Subscriber.objects.filter(name="probe.retired").update(last_seen_at=old)
    Relay().prune()
    assert not Delivery.objects.filter(pk__in=[dead.pk, orphan.pk]).exists()
    assert StoredEvent.objects.filter(event_id=event.event_id).exists(), "events are kept for ever"


def test_only_one_relay_at_a_time_prunes():
    publish()
    # Finished (as if) in a month over for longer than the retention: where deliveries are
    # partitioned by their event's month, they go with it.
    long_ago = datetime(2026, 4, 10, tzinfo=UTC)
    Delivery.objects.filter(status="succeeded").update(completed_at=long_ago, event_recorded_at=long_ago)
    params = {k: v for k, v in connection.get_connection_params().items() if k not in ("cursor_factory", "context")}
    try:
        with psycopg.connect(**params) as other:
            other.execute(sql.TRY_PRUNE_LOCK)  # another relay is pruning (its transaction stays open)
            assert Relay().prune() == 0
            other.rollback()
        assert Relay().prune() == 3
    finally:
        for table in partitions.KEYS:
            partitions.drop_month(table=table, month=date(2026, 4, 1))


def test_relays_are_woken_on_the_configured_channel(settings):
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False, "NOTIFY_CHANNEL": "shop_42"}
    with connection.cursor() as cursor:
        cursor.execute(sql.listen("shop_42"))
    publish()
    with connection.cursor() as cursor:
        cursor.execute("UNLISTEN *")
    assert [n.channel for n in connection.connection.notifies(timeout=0.5, stop_after=5)] == ["shop_42"]


def test_a_dead_letter_that_holds_later_deliveries_is_kept_past_its_retention(settings):
    settings.HANDLER_RETRY_SCHEDULE = []
    ProbeSwitch.set("probe.fast:fail")
    probe_id, tenant_id = uuid.uuid4(), uuid.uuid4()
    with transaction.atomic():
        held_back = event_bus.publish(ProbeHappened(tenant_id=tenant_id, probe_id=probe_id, n=1))
    alone = publish()
    ProbeSwitch.objects.filter(name="probe.fast:fail").delete()
    with transaction.atomic():
        event_bus.publish(ProbeHappened(tenant_id=tenant_id, probe_id=probe_id, n=2))
    dead = Delivery.objects.get(stored_event__event_id=held_back.event_id, handler="probe.fast")
    lonely = Delivery.objects.get(stored_event__event_id=alone.event_id, handler="probe.fast")
    waiting = Delivery.objects.get(aggregate_id=probe_id, handler="probe.fast", held_by=dead.pk)
    assert (dead.status, lonely.status, waiting.status) == ("dead", "dead", "pending")

    Delivery.objects.filter(pk__in=[dead.pk, lonely.pk]).update(updated_at=timezone.now() - timedelta(days=31))
    Relay().prune()

    assert not Delivery.objects.filter(pk=lonely.pk).exists(), "a dead letter that holds nothing goes"
    assert Delivery.objects.filter(pk=dead.pk, status="dead").exists(), "one that holds a later delivery stays"
    assert Delivery.objects.get(pk=waiting.pk).held_by == dead.pk
