import uuid

import pytest
from django.db import transaction

from domain_events import tracking
from domain_events.bus import event_bus
from domain_events.events import StockAdjusted
from domain_events.relay import Relay


@pytest.fixture
def record_events():
    """Publish `count` stock adjustments for `tenant`, then let the audit projection catch up."""

    def record(tenant, count: int = 3, *, product_id=None) -> list[StockAdjusted]:
        events = []
        product_id = product_id or uuid.uuid4()
        for n in range(count):
            with transaction.atomic():
                events.append(
                    event_bus.publish(
                        StockAdjusted(
                            tenant_id=tenant.id,
                            product_id=product_id,
                            sku=f"SKU-{n}",
                            quantity_change=1,
                            on_hand=n + 1,
                            reason="restock",
                        )
                    )
                )
        Relay().drain()
        tracking.catch_up("audit.chain")
        return events

    return record
