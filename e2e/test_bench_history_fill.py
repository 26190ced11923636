"""The history benchmark's fill (`bench/history.py`) writes what it promises on a tiny size: the
events asked for, their deliveries, orders, summaries, audit entries and webhook deliveries in
the real tables, spread over the months asked for, with the readers' checkpoints at its end."""

from __future__ import annotations

from collections import Counter

import pytest
from django.db import connection

from analytics.models import OrderSummary
from audit.models import AuditEntry
from bench.history import LIFE, WEBHOOK_TYPES, deliveries_per_order, fill, months_after, prepare_shape
from domain_events.models import Checkpoint, Delivery, StoredEvent, Stream, Subscriber
from orders.models import Order
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db

EVENTS = 97  # ten pairs of orders, one more order, and the next cut after two events


def test_the_fill_writes_the_requested_history_in_the_real_tables():
    shape = prepare_shape(months=3)
    with connection.cursor() as cursor:
        fill(cursor.execute, events=EVENTS, shape=shape, chunk=40, say=lambda _: None)

    events = list(StoredEvent.objects.order_by("position"))
    assert [e.position for e in events] == list(range(1, EVENTS + 1))
    assert len({e.event_id for e in events}) == EVENTS
    kinds = Counter(e.type for e in events)
    placed = kinds["order.placed"]
    assert placed == 22, kinds
    assert kinds["order.fulfilled"] == 11, kinds
    assert set(kinds) == set(LIFE)
    assert Order.objects.count() == placed == Stream.objects.count() == OrderSummary.objects.count()
    assert {o.tenant_id for o in Order.objects.all()} == set(shape.tenants)

    expected = sum(len(shape.handlers[e.type]) for e in events)
    assert Delivery.objects.count() == expected
    assert 2.2 < deliveries_per_order(shape) * 2 / 9 < 2.6
    assert not Delivery.objects.filter(status__in=Delivery.OPEN).exists()
    assert AuditEntry.objects.count() == EVENTS
    webhook_events = [e for e in events if e.tenant_id == shape.tenants[0] and e.type in WEBHOOK_TYPES]
    assert WebhookDelivery.objects.count() == len(webhook_events) > 0

    assert shape.start <= events[0].recorded_at < months_after(shape.start, 1)
    assert events[-1].recorded_at <= shape.end
    assert {c.name: c.position for c in Checkpoint.objects.all()} == dict.fromkeys(shape.trackers, EVENTS)
    assert not Subscriber.objects.exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval('domain_events_position_seq')")
        assert cursor.fetchone()[0] == EVENTS + 1
