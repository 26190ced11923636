"""Rebuilding a projection: a new generation from the stored events, swapped in at once."""

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.db import transaction

from analytics.models import Generation, ProductSales, TenantMonth
from analytics.projections import SALES, generation_for
from analytics.services import UnknownProjection, projection_rebuild
from analytics.tests.helpers import OrderStory, line, project
from domain_events import reader_lag
from domain_events.head import head
from domain_events.models import Checkpoint, StoredEvent

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
