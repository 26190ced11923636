"""Rebuilding a projection: a new generation from the stored events, swapped in at once; with the
months `archive_events` took out of the table replayed from their files first."""

import tempfile
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.models import Generation, OrderSummary, ProductSales, TenantDay, TenantMonth, TenantTotals
from analytics.projections import SALES, generation_for
from analytics.services import ArchiveNeeded, UnknownProjection, projection_check, projection_rebuild
from analytics.tests.helpers import OrderStory, line, project
from domain_events import reader_lag, tracking
from domain_events.head import head
from domain_events.models import Checkpoint, Delivery, StoredEvent
from domain_events.subscriptions import subscriptions
from tenants.tests.factories import TenantFactory

pytestmark = pytest.mark.django_db

AT = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)


def figures() -> list[tuple]:
    live = generation_for(projection=SALES, target="live")
    return sorted(
        TenantMonth.objects.filter(generation=live).values_list(
            "tenant_id", "month", "orders", "paid_orders", "revenue"
        )
    )


def test_a_rebuild_gives_the_figures_live_updates_gave_and_moves_the_live_pointer(tenant):
    OrderStory(tenant, line("BOOK-1", 2, "12.50")).placed(at=AT).confirmed()
    OrderStory(tenant).placed(at=AT).cancelled()
    project()
    before, old = figures(), generation_for(projection=SALES, target="live")
    progress: list[int] = []
    totals: list[int] = []

    result = projection_rebuild(name=SALES, batch_size=2, on_start=totals.append, on_progress=progress.append)

    assert figures() == before
    new = generation_for(projection=SALES, target="live")
    assert new != old
    assert Generation.objects.get(pk=old).target == f"retired-{old}", "kept until the next rebuild"
    assert totals == [4]
    assert sum(progress) == result.events == 4
    assert progress[0] == 2, "batches of --batch-size"
    assert result.position == head() == Checkpoint.objects.get(name=SALES).position
    assert not Checkpoint.objects.filter(name=f"{SALES}@rebuild").exists()

    projection_rebuild(name=SALES)
    assert not Generation.objects.filter(pk=old).exists(), "the next rebuild drops what was retired before"
    assert not TenantMonth.objects.filter(generation=old).exists()
    assert figures() == before


def test_a_rebuild_repairs_figures_that_drifted(tenant):
    OrderStory(tenant, line("BOOK-1", 1, "10.00")).placed(at=AT).confirmed()
    project()
    TenantMonth.objects.update(revenue=Decimal("999.00"))
    projection_rebuild(name=SALES)
    assert figures()[0][-1] == Decimal("10.00")


def test_events_recorded_after_the_rebuild_are_applied_by_the_live_projection_into_the_new_tables(tenant):
    OrderStory(tenant).placed(at=AT)
    project()
    projection_rebuild(name=SALES)
    OrderStory(tenant).placed(at=AT)
    project()
    assert figures()[0][2] == 2


def test_stored_v1_events_are_upcast_during_a_rebuild(tenant):
    """A v1 `inventory.stock_adjusted` (with `delta`, no reason) as an older release stored it."""
    with transaction.atomic():
        StoredEvent.objects.create(
            event_id=uuid.uuid4(),
            type="inventory.stock_adjusted",
            version=1,
            tenant_id=tenant.id,
            aggregate_id=uuid.uuid4(),
            occurred_at=AT,
            correlation_id="c",
            causation_id=uuid.uuid4(),
            payload={"product_id": str(uuid.uuid4()), "sku": "OLD-1", "delta": 7, "on_hand": 7},
        )
    projection_rebuild(name=SALES)
    live = generation_for(projection=SALES, target="live")
    old = ProductSales.objects.get(generation=live, sku="OLD-1")
    assert (old.restocked, old.on_hand) == (7, 7)


def test_an_unknown_projection_is_refused_and_nothing_changes(tenant):
    OrderStory(tenant).placed(at=AT)
    project()
    generations = list(Generation.objects.values_list("id", "target"))
    with pytest.raises(UnknownProjection, match="nope"):
        projection_rebuild(name="nope")
    assert list(Generation.objects.values_list("id", "target")) == generations
    assert reader_lag.lag(SALES).positions == 0
    assert figures()[0][1] == date(2026, 3, 1)


def live_rows() -> dict[str, list[tuple]]:
    """Every live read-model row, without ids and generations."""
    generation = generation_for(projection=SALES, target="live")
    rows = {}
    for model in (OrderSummary, TenantMonth, TenantDay, TenantTotals, ProductSales):
        fields = [f.name for f in model._meta.concrete_fields if f.name not in ("id", "generation")]
        rows[model.__name__] = sorted(
            tuple(map(str, r)) for r in model.objects.filter(generation=generation).values_list(*fields)
        )
    return rows


MONTHS = [date(2026, m, 1) for m in range(1, 5)]
step = st.one_of(
    st.tuples(st.just("place"), st.sampled_from(MONTHS), st.sampled_from(["BOOK-1", "BOOK-2"]), st.integers(1, 3)),
    st.tuples(st.sampled_from(["confirmed", "cancelled", "fulfilled"]), st.integers(0, 9), st.sampled_from(MONTHS)),
)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=st.lists(step, min_size=1, max_size=12), before=st.sampled_from([*MONTHS[1:], date(2026, 5, 1)]))
def test_a_rebuild_with_the_archive_gives_what_live_updates_gave_before_archiving(steps, before):
    """Each event is recorded in a random month, so archived months hold events numbered after
    events still in the table: the replay must merge them in position order."""
    with transaction.atomic():
        tenant = TenantFactory()
        stories: list[OrderStory] = []
        for kind, *rest in steps:
            if kind == "place":
                month, sku, quantity = rest
                stories.append(OrderStory(tenant, line(sku, quantity)).placed(at=datetime(2026, 1, 5, tzinfo=UTC)))
            elif stories:
                index, month = rest
                getattr(stories[index % len(stories)], kind)()
            else:
                continue
            latest = StoredEvent.objects.order_by("-position").first()
            StoredEvent.objects.filter(pk=latest.pk).update(
                recorded_at=datetime(month.year, month.month, 9, tzinfo=UTC)
            )
        Delivery.objects.filter(status__in=Delivery.OPEN).update(status="succeeded", completed_at=timezone.now())
        for tracker in subscriptions.trackers():
            tracking.catch_up(tracker.name)
        before_archiving = live_rows()

        with tempfile.TemporaryDirectory() as directory:
            call_command("archive_events", "--before", f"{before:%Y-%m}", "--to", directory, stdout=StringIO())
            archived = StoredEvent.objects.filter(recorded_at__lt=datetime(before.year, before.month, 1, tzinfo=UTC))
            assert not archived.exists()
            projection_rebuild(name=SALES, batch_size=3, archive=Path(directory))
            assert live_rows() == before_archiving
            assert projection_check(name=SALES, batch_size=4, archive=Path(directory)).differences == []
        transaction.set_rollback(True)


def test_a_rebuild_without_the_archive_of_archived_months_is_refused(tenant, tmp_path):
    OrderStory(tenant).placed(at=AT).confirmed()
    StoredEvent.objects.update(recorded_at=datetime(2026, 1, 9, tzinfo=UTC))
    Delivery.objects.update(status="succeeded", completed_at=timezone.now())
    for tracker in subscriptions.trackers():
        tracking.catch_up(tracker.name)
    call_command("archive_events", "--before", "2026-02", "--to", str(tmp_path), stdout=StringIO())
    with pytest.raises(ArchiveNeeded, match="2026-01 are archived"):
        projection_rebuild(name=SALES)
    live = generation_for(projection=SALES, target="live")
    assert TenantMonth.objects.get(generation=live).paid_orders == 1, "the live figures are untouched"
