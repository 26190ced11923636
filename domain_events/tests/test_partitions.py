"""Monthly partitions (PostgreSQL): the tables' layout and keys, an insert into a month without a
partition, the months made ahead by the relays' housekeeping, and retention that truncates a month
of deliveries but keeps the dead letters and what they hold back."""

import dataclasses
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from core.testing import unavailable
from domain_events import partitions
from domain_events.bus import event_bus
from domain_events.models import Delivery, StoredEvent
from domain_events.partitions import DELIVERIES, EVENTS
from domain_events.relay import Relay
from domain_events.tests.probe.events import ProbeHappened
from domain_events.tests.probe.models import ProbeSwitch

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _months_made_here_go(transactional_db):
    """Partitions are schema, which the flush between tests leaves: those a test made go after it."""
    if connection.vendor != "postgresql":
        unavailable("monthly partitions are PostgreSQL's")
    before = {p.name for table in partitions.KEYS for p in partitions.month_partitions(table)}
    yield
    for table in partitions.KEYS:
        for part in partitions.month_partitions(table):
            if part.name not in before and part.month is not None:
                partitions.drop_month(table=table, month=part.month)


TENANT = uuid.uuid4()


def publish(n: int = 1, probe_id: uuid.UUID | None = None) -> ProbeHappened:
    with transaction.atomic():
        return event_bus.publish(ProbeHappened(tenant_id=TENANT, probe_id=probe_id or uuid.uuid4(), n=n))


def home_of(table: str, pk: int) -> str:
    """The partition a row is in."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {table} WHERE id = %s", [pk])  # noqa: S608
        return cursor.fetchone()[0]


def filenode(name: str) -> int | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_relation_filenode(to_regclass(%s))", [name])
        return cursor.fetchone()[0]


def test_both_tables_are_partitioned_by_month_with_keys_that_hold_the_month():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conrelid::regclass::text, conname, contype, "
            "ARRAY(SELECT attname::text FROM unnest(conkey) WITH ORDINALITY k(n, i) "
            "      JOIN pg_attribute a ON a.attrelid = conrelid AND a.attnum = k.n ORDER BY i) "
            "FROM pg_constraint WHERE conrelid IN (%s::regclass, %s::regclass) AND contype IN ('p', 'u') ORDER BY 1, 2",
            [EVENTS, DELIVERIES],
        )
        keys = cursor.fetchall()
    assert keys == [
        (DELIVERIES, "delivery_once_per_handler", "u", ["stored_event_id", "handler", "event_recorded_at"]),
        (DELIVERIES, f"{DELIVERIES}_pkey", "p", ["id", "event_recorded_at"]),
        (EVENTS, f"{EVENTS}_pkey", "p", ["id", "recorded_at"]),
    ]
    month = partitions.month_of(timezone.now())
    for table in partitions.KEYS:
        made = [p.month for p in partitions.month_partitions(table)]
        assert made[-1] is None, "a DEFAULT partition, last"
        ahead = [month]
        for _ in range(partitions.MONTHS_AHEAD):
            ahead.append(partitions.next_month(ahead[-1]))
        assert set(ahead) <= set(made), "this month and the next ones are made"

    event = publish()
    stored = StoredEvent.objects.get(event_id=event.event_id)
    assert home_of(EVENTS, stored.pk) == partitions.partition_name(EVENTS, month)
    for delivery in Delivery.objects.filter(stored_event=stored):
        assert delivery.event_recorded_at == stored.recorded_at
        assert home_of(DELIVERIES, delivery.pk) == partitions.partition_name(DELIVERIES, month)
    with pytest.raises(IntegrityError, match="event_id"), transaction.atomic():
        event_bus.publish(dataclasses.replace(event, n=2))


def test_an_insert_into_a_month_without_a_partition_lands_in_default_until_housekeeping_moves_it():
    far = datetime(2031, 5, 10, 12, tzinfo=UTC)
    assert partitions.partition_name(EVENTS, date(2031, 5, 1)) not in {p.name for p in partitions.month_partitions()}
    with time_machine.travel(far, tick=False):
        event = publish()
    stored = StoredEvent.objects.get(event_id=event.event_id)
    deliveries = list(Delivery.objects.filter(stored_event=stored).values_list("pk", "handler"))
    assert deliveries, "the event has deliveries"
    assert home_of(EVENTS, stored.pk) == partitions.default_name(EVENTS)
    assert {home_of(DELIVERIES, pk) for pk, _ in deliveries} == {partitions.default_name(DELIVERIES)}
    assert partitions.months_in_default(EVENTS) == [date(2031, 5, 1)]

    Relay().prune()

    assert home_of(EVENTS, stored.pk) == f"{EVENTS}_2031_05"
    assert {home_of(DELIVERIES, pk) for pk, _ in deliveries} == {f"{DELIVERIES}_2031_05"}
    moved = StoredEvent.objects.get(pk=stored.pk)
    assert (moved.event_id, moved.position, moved.recorded_at) == (stored.event_id, stored.position, far)
    assert sorted(Delivery.objects.filter(stored_event=stored).values_list("pk", "handler")) == sorted(deliveries)
    assert partitions.months_in_default(EVENTS) == partitions.months_in_default(DELIVERIES) == []


def test_the_relays_housekeeping_makes_the_next_months_ahead():
    furthest = partitions.month_of(timezone.now())
    for _ in range(partitions.MONTHS_AHEAD):
        furthest = partitions.next_month(furthest)
    for table in partitions.KEYS:
        assert partitions.drop_month(table=table, month=furthest) in (0, None)
        assert furthest not in [p.month for p in partitions.month_partitions(table)]

    Relay().prune()

    for table in partitions.KEYS:
        assert furthest in [p.month for p in partitions.month_partitions(table)]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = %s AND indexdef LIKE 'CREATE UNIQUE%%' ORDER BY 1",
            [partitions.partition_name(EVENTS, furthest)],
        )
        unique = [row[0].split(" USING btree ")[1] for row in cursor.fetchall()]
    assert unique == ["(event_id)", "(id, recorded_at)", '("position")'], "event ids and positions unique in a month"


def test_retention_truncates_a_month_fully_past_but_keeps_a_dead_letter_and_what_it_holds_back(settings):
    settings.HANDLER_RETRY_SCHEDULE = []
    ProbeSwitch.set("probe.fast:fail")
    probe_id = uuid.uuid4()
    held_back = publish(1, probe_id)
    ProbeSwitch.objects.filter(name="probe.fast:fail").delete()
    later = publish(2, probe_id)
    others = [publish(3), publish(4)]
    dead = Delivery.objects.get(stored_event__event_id=held_back.event_id, handler="probe.fast")
    waiting = Delivery.objects.get(stored_event__event_id=later.event_id, handler="probe.fast")
    assert (dead.status, waiting.status, waiting.held_by) == ("dead", "pending", dead.pk)

    # All of it recorded (as if) in March 2026, its succeeded deliveries finished then.
    march = datetime(2026, 3, 10, tzinfo=UTC)
    ids = [e.event_id for e in (held_back, later, *others)]
    StoredEvent.objects.filter(event_id__in=ids).update(recorded_at=march)
    ours = Delivery.objects.filter(stored_event__event_id__in=ids)
    ours.update(event_recorded_at=march)
    kept = {dead.pk, waiting.pk}
    ours.exclude(pk__in=kept).update(status="succeeded", completed_at=march)
    going = set(ours.exclude(pk__in=kept).values_list("pk", flat=True))
    assert going
    assert Delivery.objects.filter(pk__in=going, status="succeeded").count() == len(going)
    partitions.partitions_ensure()
    part = f"{DELIVERIES}_2026_03"
    assert {home_of(DELIVERIES, pk) for pk in kept | going} == {part}
    before = filenode(part)

    assert Relay().prune() == len(going)

    assert filenode(part) != before, "truncated (a new file), not deleted row by row"
    assert set(Delivery.objects.filter(event_recorded_at=march).values_list("pk", flat=True)) == kept
    assert Delivery.objects.get(pk=dead.pk).status == "dead"
    assert Delivery.objects.get(pk=waiting.pk).held_by == dead.pk, "it still waits behind the dead letter"
    truncated = filenode(part)
    assert Relay().prune() == 0
    assert filenode(part) == truncated, "a month with only rows to keep is left alone"

    Delivery.objects.filter(pk=dead.pk).update(updated_at=timezone.now() - timedelta(days=31))
    Relay().prune()
    assert Delivery.objects.filter(pk=dead.pk).exists(), "a dead letter that holds a later one stays past its time"


def test_the_migration_keeps_ids_positions_and_sequences_and_puts_each_month_in_its_partition():
    events = [publish(n) for n in range(3)]
    ProbeSwitch.set("probe.fast:fail")
    events.append(publish(9))
    march = datetime(2026, 3, 10, tzinfo=UTC)
    StoredEvent.objects.filter(event_id=events[0].event_id).update(recorded_at=march)
    Delivery.objects.filter(stored_event__event_id=events[0].event_id).update(event_recorded_at=march)

    def rows(*, month: bool = True):
        columns = ["id", "stored_event_id", "handler", "status", *(["event_recorded_at"] if month else [])]
        return (
            sorted(StoredEvent.objects.values_list("id", "event_id", "position", "revision", "recorded_at")),
            sorted(Delivery.objects.values_list(*columns)),
        )

    before = rows()
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("domain_events")
    try:
        executor.migrate([("domain_events", "0016_archivedmonth")])
        assert not partitions.partitioned(EVENTS)
        assert not partitions.partitioned(DELIVERIES)
        assert rows(month=False) == (before[0], sorted(d[:4] for d in before[1])), "back to plain tables, as it was"
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)

    assert partitions.partitioned(EVENTS)
    assert partitions.partitioned(DELIVERIES)
    assert rows() == before
    first = StoredEvent.objects.get(event_id=events[0].event_id)
    assert home_of(EVENTS, first.pk) == f"{EVENTS}_2026_03"
    assert {
        home_of(DELIVERIES, pk) for pk in Delivery.objects.filter(stored_event=first).values_list("pk", flat=True)
    } == {f"{DELIVERIES}_2026_03"}
    highest = max(e[0] for e in before[0]), max(e[2] for e in before[0])
    newest = StoredEvent.objects.get(event_id=publish().event_id)
    assert newest.pk > highest[0], "ids go on from where they were"
    assert newest.position > highest[1], "and positions"
    assert max(Delivery.objects.filter(stored_event=newest).values_list("pk", flat=True)) > max(d[0] for d in before[1])
