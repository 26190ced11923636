"""`bench.capacity`: the bytes of the stored events and deliveries, which PostgreSQL keeps in monthly
partitions, are counted over every partition, once; a plain table's are its own."""

from __future__ import annotations

import importlib
import os
import uuid

import pytest
from django.db import connection, transaction

from bench import capacity
from core.testing import unavailable
from domain_events import partitions
from domain_events.bus import event_bus
from domain_events.models import Delivery, StoredEvent
from domain_events.tests.probe.events import ProbeHappened

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_partitioned_tables_bytes_are_those_of_all_their_partitions():
    if not partitions.partitioned(partitions.EVENTS):
        unavailable("monthly partitions are PostgreSQL's")
    for n in range(3):
        with transaction.atomic():
            event_bus.publish(ProbeHappened(tenant_id=uuid.uuid4(), probe_id=uuid.uuid4(), n=n))

    found = capacity.sizes()

    counts = {partitions.EVENTS: StoredEvent.objects.count(), partitions.DELIVERIES: Delivery.objects.count()}
    for table, rows in counts.items():
        size, counted = found[table]
        assert counted == rows > 0
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = to_regclass(%s)",
                [table],
            )
            in_partitions = cursor.fetchone()[0]
        assert size == in_partitions > 0, f"{table}: every partition's bytes, not the empty parent's"
    assert not [t for t in found if t.startswith((partitions.EVENTS + "_", partitions.DELIVERIES + "_"))], (
        "a partition is not listed apart: its bytes and rows are its table's"
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size('domain_events_stream')")
        assert found["domain_events_stream"] == (cursor.fetchone()[0], 3), "a plain table: its own bytes"


def test_importing_it_leaves_the_processes_environment_alone(monkeypatch):
    """Tests import it: a host list set here would reach every server a later test starts
    (gunicorn refused 127.0.0.1 with `ALLOWED_HOSTS=testserver`)."""
    monkeypatch.delenv("ALLOWED_HOSTS", raising=False)
    importlib.reload(capacity)
    assert "ALLOWED_HOSTS" not in os.environ
