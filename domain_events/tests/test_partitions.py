"""Monthly partitions (PostgreSQL): the tables' layout and keys, an insert into a month without a
partition, the months made ahead by the relays' housekeeping, retention that truncates a month
of deliveries but keeps the dead letters and what they hold back, and the statements on claimed
deliveries, which search their events' month alone."""

import base64
import dataclasses
import importlib
import json
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest
import time_machine
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.testing import unavailable
from domain_events import partitions
from domain_events.bus import event_bus
from domain_events.celery_claims import claim_for_workers
from domain_events.executor import run_due_here
from domain_events.fastpath import hand_on
from domain_events.models import Delivery, StoredEvent
from domain_events.partitions import DELIVERIES, EVENTS
from domain_events.relay import Relay
from domain_events.subscriptions import subscriptions
from domain_events.tasks import run_delivery
from domain_events.tests.probe.events import ProbeCalledOut, ProbeHappened
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
        assert set(partitions.months_wanted(timezone.now())) <= set(made), "this month (and the next near its end)"

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


def test_the_relays_housekeeping_makes_the_next_month_a_week_before_it_begins_and_no_earlier():
    following = partitions.next_month(partitions.month_of(timezone.now()))
    begins, _ = partitions.month_bounds(following)
    for table in partitions.KEYS:
        assert partitions.drop_month(table=table, month=following) in (0, None)

    with time_machine.travel(begins - partitions.NEXT_MONTH_LEAD - timedelta(hours=1), tick=False):
        Relay().prune()
    for table in partitions.KEYS:
        assert following not in [p.month for p in partitions.month_partitions(table)], "not yet: an empty partition"

    with time_machine.travel(begins - partitions.NEXT_MONTH_LEAD + timedelta(hours=1), tick=False):
        Relay().prune()
    for table in partitions.KEYS:
        assert following in [p.month for p in partitions.month_partitions(table)]
    furthest = following
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


# --- statements on claimed deliveries: one month's partition ---------------------------------

# A scan that finds rows by their id (`id = …`), not by a join key or a handler's queue.
_BY_ID = re.compile(r"\bid = ")
# Scans that follow a row's aggregate (earlier deliveries, uncovered events) or what a row holds
# back: those rows may be in any month.
_FOLLOWED = {"o", "x", "pe", "h", "b"}


def months_searched_by_id(statement: str) -> set[str]:
    """The partitions of deliveries and events in which `statement` looks rows up by id, as it runs
    (EXPLAIN ANALYZE, rolled back): pruned partitions are left out, whether the planner or the
    executor pruned them."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement)
        plan = cursor.fetchone()[0]
        transaction.set_rollback(True)
    if isinstance(plan, str):
        plan = json.loads(plan)
    found: set[str] = set()
    nodes = [plan[0]["Plan"]]
    while nodes:
        node = nodes.pop()
        nodes.extend(node.get("Plans", ()))
        relation, alias = node.get("Relation Name", ""), re.sub(r"_\d+$", "", node.get("Alias", ""))
        conditions = " ".join(str(node.get(key, "")) for key in ("Index Cond", "Filter", "Recheck Cond"))
        if (
            relation.startswith((DELIVERIES, EVENTS))
            and alias not in _FOLLOWED
            and node.get("Actual Loops", 0) > 0
            and _BY_ID.search(conditions)
        ):
            found.add(relation)
    return found


def searched_by_id(captured: CaptureQueriesContext) -> dict[str, set[str]]:
    """The captured statements on deliveries that look rows up by id, and the partitions they search
    (inserts are left out: they search nothing, and could not run twice)."""
    statements = [q["sql"] for q in captured.captured_queries if DELIVERIES in q["sql"] and "INSERT" not in q["sql"]]
    searched = {statement: months_searched_by_id(statement) for statement in statements}
    return {statement: found for statement, found in searched.items() if found}


def previous_month(month: date) -> date:
    return partitions.month_of(datetime(month.year, month.month, 1, tzinfo=UTC) - timedelta(days=1))


def make_due(**lookup) -> Delivery:
    delivery = Delivery.objects.get(**lookup)
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    return delivery


def queued_task(redis_broker, queue: str) -> tuple[list, dict]:
    args, kwargs, _ = json.loads(base64.b64decode(json.loads(redis_broker.rpop(queue))["body"]))
    return args, kwargs


def test_statements_on_claimed_deliveries_search_their_events_month_alone(settings, redis_broker):
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
    redis_broker.flushdb()
    this_month = partitions.month_of(timezone.now())
    months = [previous_month(previous_month(this_month)), previous_month(this_month), this_month]
    for month in months:
        for table in partitions.KEYS:
            partitions.month_partition_create(table=table, month=month)
    published = {}
    for month in months:
        with time_machine.travel(datetime(month.year, month.month, 15, 12, tzinfo=UTC), tick=False):
            held_back = uuid.uuid4()
            with transaction.atomic():
                called_out = event_bus.publish(ProbeCalledOut(tenant_id=TENANT, probe_id=uuid.uuid4(), n=1))
            published[month] = (publish(1), publish(2, held_back), publish(3, held_back), called_out)
    for month in months:
        for table in partitions.KEYS:
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT count(*) FROM {partitions.partition_name(table, month)}")  # noqa: S608
                assert cursor.fetchone()[0] > 0, "each of the three months holds rows"
    # The middle month's events are the ones run; nothing else is due.
    Delivery.objects.update(next_attempt_at=timezone.now() + timedelta(days=1))
    month = months[1]
    happened, held, holding, called_out = published[month]
    ours = {partitions.partition_name(DELIVERIES, month), partitions.partition_name(EVENTS, month)}
    slow = make_due(handler="probe.slow", stored_event__event_id=happened.event_id)
    calling = make_due(handler="probe.call_out", stored_event__event_id=called_out.event_id)
    make_due(handler="probe.fast", stored_event__event_id=happened.event_id)
    make_due(handler="probe.other", stored_event__event_id=holding.event_id)
    ProbeSwitch.set("probe.fast:fail")

    with CaptureQueriesContext(connection) as captured:
        # A relay claims and sends Celery deliveries; workers run the messages.
        claims, _ = claim_for_workers(10, [subscriptions.get("probe.slow"), subscriptions.get("probe.call_out")])
        assert sorted(c.delivery_id for c in claims) == sorted([slow.pk, calling.pk])
        assert hand_on(claims, by_relay=True).sent == 2
        for handler in ("probe.slow", "probe.call_out"):
            args, kwargs = queued_task(redis_broker, subscriptions.get(handler).celery_queue)
            assert partitions.month_of(datetime.fromisoformat(kwargs["recorded_at"])) == month, "the message says"
            assert run_delivery(*args, **kwargs)["succeeded"] == 1
        # A relay runs an in-process delivery that fails (its retry recorded), and one held back.
        assert run_due_here(10, ["probe.fast"]).failed == 1
        assert run_due_here(10, ["probe.other"]).waiting == 1

    searched = searched_by_id(captured)
    assert len(searched) >= 10, "claims, sends, starts, locks and outcomes"
    for statement, found in searched.items():
        assert found <= ours, f"{sorted(found)} searched by:\n{statement}"
    assert Delivery.objects.get(pk=slow.pk).status == Delivery.objects.get(pk=calling.pk).status == "succeeded"
    assert Delivery.objects.get(handler="probe.other", stored_event__event_id=holding.event_id).held_by == (
        Delivery.objects.get(handler="probe.other", stored_event__event_id=held.event_id).pk
    )

    # A message sent without the month (before messages carried it) still runs, by the ids alone.
    make_due(handler="probe.slow", stored_event__event_id=held.event_id)
    [claim], _ = claim_for_workers(10, [subscriptions.get("probe.slow")])
    assert run_delivery(claim.delivery_id, str(claim.token), "probe.slow", timezone.now().isoformat()) == {
        "succeeded": 1,
        "failed": 0,
        "dead": 0,
        "waiting": 0,
    }

    # A publisher's fast path runs its in-process deliveries at commit.
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": True}
    ProbeSwitch.objects.all().delete()
    with (
        time_machine.travel(datetime(month.year, month.month, 20, tzinfo=UTC)),
        CaptureQueriesContext(connection) as captured,
    ):
        fresh = publish(4)
    assert Delivery.objects.get(handler="probe.fast", stored_event__event_id=fresh.event_id).status == "succeeded"
    searched = searched_by_id(captured)
    assert searched, "the fast path's locks and outcomes"
    for statement, found in searched.items():
        assert found <= ours, f"{sorted(found)} searched by:\n{statement}"


def test_the_migration_to_a_week_ahead_drops_empty_partitions_of_months_not_wanted_yet_and_keeps_those_with_rows():
    migration = importlib.import_module("domain_events.migrations.0018_next_month_made_a_week_ahead")
    empty = partitions.next_month(partitions.next_month(partitions.month_of(timezone.now())))
    holding = partitions.next_month(empty)
    for table in partitions.KEYS:
        for month in (empty, holding):
            partitions.month_partition_create(table=table, month=month)
    with time_machine.travel(datetime(holding.year, holding.month, 10, 12, tzinfo=UTC), tick=False):
        event = publish()
    stored = StoredEvent.objects.get(event_id=event.event_id)

    migration.forward(None, SimpleNamespace(connection=connection))

    for table in partitions.KEYS:
        months = [p.month for p in partitions.month_partitions(table)]
        assert empty not in months, f"{table}: an empty month not wanted yet is dropped"
        assert holding in months, f"{table}: a month holding rows stays"
        assert set(partitions.months_wanted(timezone.now())) <= set(months), "the months wanted now stay"
    assert home_of(EVENTS, stored.pk) == partitions.partition_name(EVENTS, holding)
