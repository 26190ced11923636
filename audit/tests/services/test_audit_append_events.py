"""Appending events to the tenants' hash chains, through the audit projection."""

import itertools
import uuid

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from audit.chain import CONTENT_FIELDS, GENESIS, entry_hash
from audit.models import AuditEntry
from domain_events import tracking
from domain_events.bus import event_bus
from domain_events.events import StockAdjusted
from domain_events.models import StoredEvent

pytestmark = pytest.mark.django_db(transaction=True)


def test_every_event_becomes_one_entry_chained_per_tenant_in_position_order(tenant, other_tenant, record_events):
    mine = record_events(tenant, 3)
    theirs = record_events(other_tenant, 2)
    chain = list(AuditEntry.objects.filter(tenant_id=tenant.id).order_by("sequence"))
    assert [e.event_id for e in chain] == [e.event_id for e in mine]
    assert [e.sequence for e in chain] == [1, 2, 3]
    assert chain[0].previous_hash == GENESIS
    for before, entry in itertools.pairwise(chain):
        assert entry.previous_hash == before.hash
    for entry in chain:
        assert entry.hash == entry_hash(entry.previous_hash, {f: getattr(entry, f) for f in CONTENT_FIELDS})
        assert entry.position == StoredEvent.objects.get(event_id=entry.event_id).position
        assert entry.actor == "system"
        assert entry.payload["reason"] == "restock"
    assert AuditEntry.objects.filter(tenant_id=other_tenant.id).count() == len(theirs) == 2


def test_a_replayed_batch_appends_nothing_twice(tenant, record_events):
    record_events(tenant, 2)
    tracking.reset("audit.chain")
    tracking.catch_up("audit.chain")
    assert AuditEntry.objects.filter(tenant_id=tenant.id).count() == 2


def test_the_database_refuses_to_update_or_delete_an_entry(tenant, record_events):
    record_events(tenant, 1)
    entry = AuditEntry.objects.get(tenant_id=tenant.id)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(actor="someone else")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditentry WHERE id = %s", [entry.pk])
    assert AuditEntry.objects.get(pk=entry.pk).actor == "system"


def test_private_fields_stay_out_of_the_trail_and_the_entry_records_the_events_actor(tenant):
    import uuid
    from decimal import Decimal

    from domain_events.bus import event_bus
    from domain_events.context import acting_as
    from domain_events.events import OrderLine, OrderPlaced
    from domain_events.relay import Relay

    customer = uuid.uuid4()
    with acting_as(f"customer:{customer}"), transaction.atomic():
        event_bus.publish(
            OrderPlaced(
                tenant_id=tenant.id,
                order_id=uuid.uuid4(),
                customer_id=customer,
                lines=(OrderLine(sku="S", title="T", quantity=1, unit_price=Decimal("1.00")),),
                total_amount=Decimal("1.00"),
                currency="USD",
                payment_token="tok_secret_visa",
            )
        )
    Relay().drain()
    entry = AuditEntry.objects.get(tenant_id=tenant.id, event_type="order.placed")
    assert "payment_token" not in entry.payload
    assert "tok_secret_visa" not in str(entry.payload)
    assert entry.actor == f"customer:{customer}"


def test_one_pass_of_the_audit_reader_over_an_event_takes_few_statements(
    tenant, record_events, django_assert_max_num_queries
):
    """The head, the transaction, the checkpoint with the events and its move, and the new entries:
    the chains' heads are those the reader's previous batch left, unless something else moved its
    checkpoint meanwhile."""
    record_events(tenant, count=1)
    with transaction.atomic():
        event_bus.publish(
            StockAdjusted(
                tenant_id=tenant.id, product_id=uuid.uuid4(), sku="S-9", quantity_change=1, on_hand=2, reason="restock"
            )
        )
    with django_assert_max_num_queries(5):
        assert tracking.catch_up("audit.chain") == 1
    assert AuditEntry.objects.filter(tenant_id=tenant.id).count() == 2
    tracking.reset("audit.chain")
    with django_assert_max_num_queries(6):
        tracking.catch_up("audit.chain")
    assert AuditEntry.objects.filter(tenant_id=tenant.id).count() == 2, "a replay appends nothing twice"
