"""Writes of the audit module: appending events to the tenants' chains (its projection's only job)."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from django.db import connection
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from audit.chain import CONTENT_FIELDS, GENESIS, entry_hash
from audit.models import AuditEntry
from core.db import insert_rows
from domain_events.actors import SYSTEM
from domain_events.events import ENVELOPE_FIELDS, DomainEvent
from domain_events.registry import registry


def _payload(event: DomainEvent) -> dict:
    data = registry.dump(event)
    return {k: v for k, v in data.items() if k not in ENVELOPE_FIELDS and k not in event.private_fields}


# The events of a batch already in the trail (`known` true), and each of its tenants' last entry.
_ENTRIES = AuditEntry._meta.db_table
_KNOWN_AND_HEADS = f"""
SELECT event_id, NULL, NULL, true FROM {_ENTRIES} WHERE event_id = ANY(%(events)s)
UNION ALL
SELECT h.tenant_id, h.sequence, h.hash, false FROM unnest(%(tenants)s::uuid[]) AS t(id), LATERAL (
    SELECT tenant_id, sequence, hash FROM {_ENTRIES} WHERE tenant_id = t.id ORDER BY sequence DESC LIMIT 1
) h"""  # noqa: S608 (the table's name from the model)


def _known_and_heads(event_ids: list[UUID], tenants: set[UUID]) -> tuple[set[UUID], dict[UUID, tuple[int, str]]]:
    """Which of `event_ids` are in the trail already, and the (sequence, hash) each of `tenants`'
    chains ends with (`GENESIS` before its first entry): on PostgreSQL in one statement."""
    heads: dict[UUID, tuple[int, str]] = dict.fromkeys(tenants, (0, GENESIS))
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_KNOWN_AND_HEADS, {"events": event_ids, "tenants": list(tenants)})
            found = cursor.fetchall()
        for key, sequence, hash_, known in found:
            if not known:
                heads[key] = (sequence, hash_)
        return {key for key, _, _, known in found if known}, heads
    known = set(AuditEntry.objects.filter(event_id__in=event_ids).values_list("event_id", flat=True))
    # Each tenant's last entry, by a correlated subquery on (tenant_id, sequence) rather than
    # PostgreSQL's DISTINCT ON, so that the trail is written on the SQLite default of `make run` too.
    last = AuditEntry.objects.filter(tenant_id=OuterRef("tenant_id")).order_by("-sequence").values("sequence")[:1]
    for tenant_id, sequence, hash_ in AuditEntry.objects.filter(
        tenant_id__in=tenants, sequence=Subquery(last)
    ).values_list("tenant_id", "sequence", "hash"):
        heads[tenant_id] = (sequence, hash_)
    return known, heads


# The last entry of each chain the audit reader appended to, as its last batch left them: valid for
# its next batch when nothing else moved its checkpoint meanwhile (`TrackingContext.resumes`).
_heads: dict[UUID, tuple[int, str]] = {}
MAX_HEADS_KEPT = 10_000


def audit_append_events(*, events: Sequence[tuple[DomainEvent, int]], resumes: bool = False) -> list[AuditEntry]:
    """Append `(event, position)` pairs, in position order, to their tenants' chains.

    Called by the audit projection inside the transaction that also moves its checkpoint, so a
    batch is appended once. An event already in the trail (it cannot be, unless a checkpoint was
    reset) is skipped rather than appended twice. With `resumes` (the batch follows this process's
    previous one) none can be, and the chains' heads it left are taken as they are.
    """
    if not events:
        return []
    if not resumes or len(_heads) > MAX_HEADS_KEPT:
        _heads.clear()
    tenants = {e.tenant_id for e, _ in events}
    heads = {tenant: _heads[tenant] for tenant in tenants if tenant in _heads}
    known: set[UUID] = set()
    if len(heads) < len(tenants) or not resumes:
        known, found = _known_and_heads([] if resumes else [e.event_id for e, _ in events], tenants - heads.keys())
        heads.update(found)
    now = timezone.now()
    entries = []
    for event, position in events:
        if event.event_id in known:
            continue
        sequence, previous = heads[event.tenant_id]
        entry = AuditEntry(
            tenant_id=event.tenant_id,
            sequence=sequence + 1,
            event_id=event.event_id,
            event_type=event.type,
            aggregate_id=event.aggregate_id,
            actor=event.actor or SYSTEM,
            correlation_id=event.correlation_id,
            causation_id=event.causation_id or event.event_id,
            payload=_payload(event),
            occurred_at=event.occurred_at,
            recorded_at=now,
            position=position,
            previous_hash=previous,
        )
        entry.hash = entry_hash(previous, {f: getattr(entry, f) for f in CONTENT_FIELDS})
        heads[event.tenant_id] = (entry.sequence, entry.hash)
        entries.append(entry)
    created = insert_rows(entries)
    _heads.update(heads)
    return created
