"""`archive_events`: each month before the given one goes to a self-describing compressed file that
is checked against the table before the month leaves it; months that something still needs are
refused; a file that does not read back whole is refused by the replay."""

import gzip
import json
import uuid
from datetime import UTC, date, datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.utils import timezone

from core.testing import unavailable
from domain_events import archive, partitions, tracking
from domain_events.bus import event_bus
from domain_events.events import StockAdjusted
from domain_events.models import ArchivedMonth, Checkpoint, Delivery, StoredEvent, Subscriber
from domain_events.subscriptions import subscriptions

pytestmark = pytest.mark.django_db

JAN, FEB, MAR = date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)


def recorded_in(tenant, month: date, count: int = 2) -> list[StockAdjusted]:
    """`count` events of `tenant`, recorded (as if) in `month`."""
    events = []
    for n in range(count):
        with transaction.atomic():
            events.append(
                event_bus.publish(
                    StockAdjusted(
                        tenant_id=tenant.id,
                        product_id=uuid.uuid4(),
                        sku=f"SKU-{n}",
                        quantity_change=1,
                        on_hand=n + 1,
                        reason="restock",
                    )
                )
            )
    at = datetime(month.year, month.month, 10, 12, tzinfo=UTC)
    ids = [e.event_id for e in events]
    StoredEvent.objects.filter(event_id__in=ids).update(recorded_at=at)
    Delivery.objects.filter(stored_event__event_id__in=ids).update(event_recorded_at=at)
    return events


def settle() -> None:
    """What relays and workers would have done by now: every delivery run, every reader at the head."""
    Delivery.objects.filter(status__in=Delivery.OPEN).update(status="succeeded", completed_at=timezone.now())
    for tracker in subscriptions.trackers():
        tracking.catch_up(tracker.name)


def run(*args: str) -> str:
    out = StringIO()
    call_command("archive_events", *args, stdout=out)
    return out.getvalue()


def test_each_month_before_goes_to_a_file_that_describes_itself_and_leaves_the_table(tenant, tmp_path):
    january = recorded_in(tenant, JAN, 3)
    february = recorded_in(tenant, FEB, 2)
    march = recorded_in(tenant, MAR, 1)
    settle()
    positions = dict(StoredEvent.objects.values_list("event_id", "position"))

    output = run("--before", "2026-03", "--to", str(tmp_path))

    assert "2026-01: 3 events archived" in output
    assert "2026-02: 2 events archived" in output
    assert set(StoredEvent.objects.values_list("event_id", flat=True)) == {e.event_id for e in march}
    assert not Delivery.objects.filter(stored_event__event_id__in=[e.event_id for e in january]).exists()
    with gzip.open(tmp_path / "events-2026-01.ndjson.gz", "rt") as stream:
        header, *lines = [json.loads(line) for line in stream]
    assert header["format"] == "shelfwise-stored-events"
    assert header["month"] == "2026-01"
    assert header["events"] == 3
    assert "payload" in header["columns"]
    assert header["types"] == {"inventory.stock_adjusted": 3}
    tenant_part = header["tenants"][str(tenant.id)]
    assert tenant_part["events"] == 3
    assert len(tenant_part["chain_head"]) == 64
    assert [line["event_id"] for line in lines] == [str(e.event_id) for e in january]
    assert [line["position"] for line in lines] == [positions[e.event_id] for e in january]
    assert lines[0]["payload"]["sku"] == "SKU-0"
    recorded = ArchivedMonth.objects.get(month=JAN)
    assert (recorded.events, recorded.file_name, recorded.checksum) == (
        3,
        "events-2026-01.ndjson.gz",
        header["sha256_lines"],
    )
    assert recorded.tenants == header["tenants"]
    assert ArchivedMonth.objects.get(month=FEB).first_position == positions[february[0].event_id]

    assert "No stored events before 2026-03" in run("--before", "2026-03", "--to", str(tmp_path)), "idempotent"


def test_a_month_that_deliveries_still_need_is_refused_and_nothing_is_written_or_removed(tenant, tmp_path):
    events = recorded_in(tenant, JAN, 2)
    settle()
    needed = Delivery.objects.filter(stored_event__event_id=events[0].event_id).first() or Delivery.objects.create(
        stored_event=StoredEvent.objects.get(event_id=events[0].event_id),
        handler="probe.handler",
        event_type="inventory.stock_adjusted",
        tenant_id=tenant.id,
        aggregate_id=uuid.uuid4(),
        next_attempt_at=timezone.now(),
    )
    Delivery.objects.filter(pk=needed.pk).update(status="dead")

    with pytest.raises(CommandError, match=rf"1 dead deliveries to {needed.handler} still need them"):
        run("--before", "2026-02", "--to", str(tmp_path))
    assert StoredEvent.objects.count() == 2
    assert not list(tmp_path.iterdir())
    assert not ArchivedMonth.objects.exists()


def test_a_month_a_position_reader_has_not_read_is_refused(tenant, tmp_path):
    recorded_in(tenant, JAN, 1)
    settle()
    Checkpoint.objects.filter(name="audit.chain").update(position=0)
    with pytest.raises(CommandError, match=r"position reader audit.chain is at 0"):
        run("--before", "2026-02", "--to", str(tmp_path))
    assert StoredEvent.objects.count() == 1


def test_a_month_a_subscriber_of_this_code_is_not_covered_past_is_refused(tenant, tmp_path):
    recorded_in(tenant, JAN, 1)
    settle()
    now = timezone.now()
    handler = next(iter(subscriptions.all())).name
    for name in (handler, "retired.handler"):
        Subscriber.objects.update_or_create(
            name=name,
            defaults={"mode": "on_commit", "first_position": 0, "covered_position": 0, "last_seen_at": now},
        )
    with pytest.raises(CommandError, match=rf"subscriber {handler} is covered only up to 0") as refused:
        run("--before", "2026-02", "--to", str(tmp_path))
    assert "retired.handler" not in str(refused.value), "a handler no code runs does not hold the archive"
    Subscriber.objects.filter(name=handler).update(covered_position=StoredEvent.objects.get().position)
    assert "1 month(s) archived" in run("--before", "2026-02", "--to", str(tmp_path))


def test_only_months_that_are_over_and_well_formed_are_taken(tmp_path):
    with pytest.raises(CommandError, match="not a month"):
        run("--before", "2026-13", "--to", str(tmp_path))
    next_year = timezone.now().year + 1
    with pytest.raises(CommandError, match="only months that are over"):
        run("--before", f"{next_year}-01", "--to", str(tmp_path))


def test_a_file_that_does_not_read_back_whole_or_is_missing_is_refused(tenant, tmp_path):
    recorded_in(tenant, JAN, 2)
    settle()
    run("--before", "2026-02", "--to", str(tmp_path))
    path = tmp_path / "events-2026-01.ndjson.gz"
    assert [row[2] for row in archive.archived_rows(tmp_path)] == ["inventory.stock_adjusted"] * 2

    with gzip.open(path, "rt") as stream:
        header, first, _second = stream.readlines()
    with gzip.open(path, "wt") as stream:
        stream.write(header + first)  # a line lost
    with pytest.raises(archive.ArchiveCorrupt, match="read back 1 events"):
        list(archive.archived_rows(tmp_path))

    path.unlink()
    with pytest.raises(archive.ArchiveCorrupt, match="has no file for 2026-01"):
        list(archive.archived_rows(tmp_path))


def test_on_partitioned_tables_a_month_is_detached_and_dropped_once_its_file_is_checked(tenant, tmp_path):
    if connection.vendor != "postgresql":
        unavailable("monthly partitions are PostgreSQL's")
    recorded_in(tenant, JAN, 3)
    recorded_in(tenant, FEB, 1)
    settle()
    partitions.partitions_ensure()  # the relays' housekeeping: each month out of DEFAULT into its own
    names = [partitions.partition_name(t, m) for t in partitions.KEYS for m in (JAN, FEB)]
    assert all(relation(name) for name in names)
    Delivery.objects.filter(stored_event__recorded_at__lt=datetime(2026, 2, 1, tzinfo=UTC)).update(status="dead")

    with pytest.raises(CommandError, match="still need them"):
        run("--before", "2026-02", "--to", str(tmp_path))
    assert all(relation(name) for name in names), "a refused month keeps its partitions"
    Delivery.objects.filter(status="dead").update(status="skipped")

    assert "2026-01: 3 events archived" in run("--before", "2026-02", "--to", str(tmp_path))

    assert [relation(name) for name in names] == [False, True, False, True], "January's partitions are gone"
    assert StoredEvent.objects.count() == 1
    assert archive.read_header(tmp_path / "events-2026-01.ndjson.gz")["events"] == 3


def relation(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        return cursor.fetchone()[0]
