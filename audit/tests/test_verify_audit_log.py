"""`verify_audit_log`: intact chains pass; each kind of tampering is found and named; a chain
recomputed from the start fails `--expect-head`; a chain behind the stored events, or a reader that
fails or lags, fails the check; memory stays bounded however long the chain."""

import contextlib
import tracemalloc
import uuid
from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from audit.chain import CONTENT_FIELDS, GENESIS, entry_hash
from audit.models import AuditEntry
from audit.selectors import audit_chain_verify
from audit.services import audit_append_events
from domain_events.bus import event_bus
from domain_events.events import StockAdjusted
from domain_events.models import Checkpoint, Delivery, StoredEvent

pytestmark = pytest.mark.django_db(transaction=True)


def verify(*args: str) -> tuple[int, str]:
    from io import StringIO

    out = StringIO()
    try:
        call_command("verify_audit_log", *args, stdout=out)
    except SystemExit as exit_:
        return exit_.code, out.getvalue()
    return 0, out.getvalue()


@contextlib.contextmanager
def tampering():
    """What an attacker with the database's owner rights does first: switch the guard off."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditentry DISABLE TRIGGER audit_append_only")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE audit_auditentry ENABLE TRIGGER audit_append_only")


def synthetic_chain(tenant, count: int, start_position: int = 1) -> None:
    """`count` entries for `tenant`, appended by the service in batches as the projection does."""
    product = uuid.uuid4()
    batch = []
    for n in range(count):
        event = StockAdjusted(
            tenant_id=tenant.id, product_id=product, sku="S", quantity_change=1, on_hand=n, reason="restock"
        )
        event = type(event)(**{**event.__dict__, "correlation_id": "c", "causation_id": event.event_id})
        batch.append((event, start_position + n))
        if len(batch) == 500:
            audit_append_events(events=batch)
            batch = []
    audit_append_events(events=batch)


def test_intact_chains_pass_and_print_length_and_head(tenant, other_tenant, record_events):
    record_events(tenant, 3)
    record_events(other_tenant, 2)
    code, out = verify()
    assert code == 0, out
    head = AuditEntry.objects.filter(tenant_id=tenant.id).order_by("-sequence").first().hash
    assert f"tenant-a: 3 entries, head {head}" in out
    assert "tenant-b: 2 entries" in out
    assert "Audit log intact." in out
    code, out = verify("--tenant", "tenant-b")
    assert code == 0
    assert "tenant-a" not in out


def test_an_altered_entry_is_named(tenant, record_events):
    record_events(tenant, 4)
    with tampering():
        AuditEntry.objects.filter(tenant_id=tenant.id, sequence=2).update(actor="customer:mallory")
    code, out = verify()
    assert code == 1
    assert "entry #2" in out
    assert "was altered" in out


def test_an_entrys_actor_is_what_its_event_names_and_altering_it_is_caught(tenant, staff, record_events):
    from domain_events.context import acting_as

    with acting_as(f"staff:{staff.pk}"):
        record_events(tenant, 2)
    assert set(AuditEntry.objects.filter(tenant_id=tenant.id).values_list("actor", flat=True)) == {f"staff:{staff.pk}"}
    assert verify()[0] == 0
    with tampering():
        AuditEntry.objects.filter(tenant_id=tenant.id, sequence=1).update(actor="system")
    code, out = verify()
    assert code == 1
    assert "entry #1" in out
    assert "was altered" in out


def test_a_removed_entry_is_named(tenant, record_events):
    record_events(tenant, 4)
    with tampering():
        AuditEntry.objects.filter(tenant_id=tenant.id, sequence=3).delete()
    code, out = verify()
    assert code == 1
    assert "entry #3 is missing" in out


def test_an_inserted_entry_is_named(tenant, record_events):
    record_events(tenant, 3)
    with tampering():
        last = AuditEntry.objects.get(tenant_id=tenant.id, sequence=3)
        AuditEntry.objects.filter(pk=last.pk).update(sequence=4)
        forged = AuditEntry.objects.get(pk=last.pk)
        forged.pk, forged.sequence, forged.event_id = None, 3, uuid.uuid4()
        forged.payload = {**forged.payload, "reason": "forged"}
        forged.previous_hash = AuditEntry.objects.get(tenant_id=tenant.id, sequence=2).hash
        forged.hash = entry_hash(forged.previous_hash, {f: getattr(forged, f) for f in CONTENT_FIELDS})
        forged.save()
    code, out = verify()
    assert code == 1
    assert "entry #4" in out
    assert "inserted or moved" in out


def test_swapped_entries_are_named(tenant, record_events):
    record_events(tenant, 4)
    with tampering():
        two = AuditEntry.objects.get(tenant_id=tenant.id, sequence=2)
        three = AuditEntry.objects.get(tenant_id=tenant.id, sequence=3)
        AuditEntry.objects.filter(pk=two.pk).update(sequence=1_000_000)
        AuditEntry.objects.filter(pk=three.pk).update(sequence=2)
        AuditEntry.objects.filter(pk=two.pk).update(sequence=3)
    code, out = verify()
    assert code == 1
    assert "entry #2" in out
    assert "inserted or moved" in out


def rewrite_chain(tenant, *, altering: int) -> None:
    """Alter entry `altering` and recompute every hash from the start: a consistent forgery."""
    with tampering():
        previous = GENESIS
        for entry in AuditEntry.objects.filter(tenant_id=tenant.id).order_by("sequence"):
            if entry.sequence == altering:
                entry.payload = {**entry.payload, "quantity_change": 1000}
            entry.previous_hash = previous
            entry.hash = entry_hash(previous, {f: getattr(entry, f) for f in CONTENT_FIELDS})
            entry.save()
            previous = entry.hash


def test_a_chain_recomputed_from_the_start_fails_the_expected_head(tenant, record_events):
    record_events(tenant, 3)
    old_head = AuditEntry.objects.filter(tenant_id=tenant.id).order_by("-sequence").first().hash
    assert verify("--expect-head", old_head)[0] == 0
    rewrite_chain(tenant, altering=2)
    code, out = verify()
    assert code == 0, "a consistent rewrite passes on its own..."
    code, out = verify("--expect-head", old_head)
    assert code == 1, "...but not against the head recorded elsewhere before"
    assert "no longer an entry" in out


def test_bad_arguments_are_refused(tenant):
    with pytest.raises(CommandError, match="no tenant"):
        call_command("verify_audit_log", "--tenant", "nope")
    with pytest.raises(CommandError, match="64 hexadecimal"):
        call_command("verify_audit_log", "--expect-head", "xyz")


def peak_memory_of_verifying(tenant_id) -> tuple[object, int]:
    tracemalloc.start()
    report = audit_chain_verify(tenant_id=tenant_id)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return report, peak


def test_a_long_chain_verifies_in_bounded_memory(tenant, other_tenant):
    synthetic_chain(other_tenant, 2_500)
    synthetic_chain(tenant, 10_000)
    short, short_peak = peak_memory_of_verifying(other_tenant.id)
    long, long_peak = peak_memory_of_verifying(tenant.id)
    assert short.intact
    assert long.intact
    assert long.length == 10_000
    # Keyset pages: four times the chain, about the same memory.
    assert long_peak < 1.5 * short_peak, f"{long_peak / 1e6:.1f} MB for 10,000 vs {short_peak / 1e6:.1f} MB for 2,500"


def test_an_empty_chain_beside_stored_events_is_not_intact(tenant):
    for n in range(2):  # recorded and numbered after commit, but no relay runs the audit reader
        with transaction.atomic():
            event_bus.publish(
                StockAdjusted(
                    tenant_id=tenant.id,
                    product_id=uuid.uuid4(),
                    sku="S",
                    quantity_change=1,
                    on_hand=n,
                    reason="restock",
                )
            )
    assert StoredEvent.objects.filter(position__isnull=False).count() == 2
    assert not AuditEntry.objects.exists()
    code, out = verify()
    assert code == 1, out
    assert "tenant-a: 0 entries" in out
    assert "READER BEHIND:" in out
    assert "not yet in the trail" in out
    assert "intact" not in out
    code, out = verify("--max-lag", "3600")
    assert code == 0, "an operator may tolerate a reader that is only a moment behind"


def test_a_failing_reader_fails_the_check(tenant, record_events):
    record_events(tenant, 2)
    Checkpoint.objects.filter(name="audit.chain").update(
        last_error="NotSupportedError: DISTINCT ON fields is not supported by this database backend"
    )
    code, out = verify()
    assert code == 1
    assert "READER FAILING: audit.chain cannot append to the trail: NotSupportedError" in out
    assert "intact" not in out


def test_entries_removed_from_the_end_are_found_against_the_stored_events(tenant, record_events):
    record_events(tenant, 3)
    with tampering():
        AuditEntry.objects.filter(tenant_id=tenant.id, sequence=3).delete()
    assert audit_chain_verify(tenant_id=tenant.id).intact, "the walk alone cannot see a shortened chain..."
    code, out = verify()
    assert code == 1, "...the stored events can"
    assert "BEHIND: 1 stored event(s) up to position" in out


def test_the_reader_position_is_reported(tenant, record_events):
    record_events(tenant, 2)
    head = StoredEvent.objects.order_by("-position").values_list("position", flat=True).first()
    code, out = verify()
    assert code == 0, out
    assert f"Reader audit.chain: at position {head} of {head}" in out


def archive_all_but_the_last(tenant, record_events, tmp_path) -> None:
    """Three events recorded (as if) in January and two in February, January archived."""
    events = record_events(tenant, 5)
    for month, group in ((1, events[:3]), (2, events[3:])):
        StoredEvent.objects.filter(event_id__in=[e.event_id for e in group]).update(
            recorded_at=datetime(2026, month, 10, tzinfo=UTC)
        )
    Delivery.objects.filter(status__in=Delivery.OPEN).update(status="succeeded", completed_at=timezone.now())
    call_command("archive_events", "--before", "2026-02", "--to", str(tmp_path), stdout=StringIO())
    assert StoredEvent.objects.filter(tenant_id=tenant.id).count() == 2


def test_the_chain_stays_verifiable_across_archived_months(tenant, record_events, tmp_path):
    archive_all_but_the_last(tenant, record_events, tmp_path)
    code, out = verify()
    assert code == 0, out
    assert "5 entries" in out


def test_a_rewrite_of_an_archived_month_is_caught_by_the_head_recorded_when_it_was_archived(
    tenant, record_events, tmp_path
):
    archive_all_but_the_last(tenant, record_events, tmp_path)
    rewrite_chain(tenant, altering=1)
    code, out = verify()
    assert code == 1, "a consistent rewrite no longer passes once a month was archived"
    assert "entry #3 is no longer the head" in out
    assert "recorded when 2026-01 was archived" in out


def test_entries_removed_with_an_archived_month_are_caught(tenant, record_events, tmp_path):
    archive_all_but_the_last(tenant, record_events, tmp_path)
    with tampering():
        AuditEntry.objects.filter(tenant_id=tenant.id, sequence__lte=3).delete()
        AuditEntry.objects.filter(tenant_id=tenant.id).update(sequence=F("sequence") - 3)
    code, out = verify()
    assert code == 1
    assert "3 stored event(s)" in out
