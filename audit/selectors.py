"""Reads of the audit module: walking a tenant's chain to verify it, in bounded memory, and
comparing it with the stored events its position reader has passed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from uuid import UUID

from django.db.models import OuterRef, Subquery

from audit.chain import CONTENT_FIELDS, GENESIS, entry_hash
from audit.models import AuditEntry
from domain_events import reader_lag
from domain_events.models import ArchivedMonth, ParkedEvent, StoredEvent
from domain_events.queries import AuditChainHeads

READER = "audit.chain"  # the position reader that appends to the chains (audit/apps.py)

CHUNK = 2000


@dataclass(frozen=True)
class ChainReport:
    tenant_id: UUID
    length: int
    head: str  # the last entry's stored hash (GENESIS for an empty chain)
    problem: str = ""  # the first entry that fails, in words; empty when intact
    contains_expected: bool | None = None  # with an expected head: whether it is still in the chain

    @property
    def intact(self) -> bool:
        return not self.problem and self.contains_expected is not False


def audit_tenants() -> list[UUID]:
    return list(AuditEntry.objects.order_by("tenant_id").values_list("tenant_id", flat=True).distinct())


@dataclass(frozen=True)
class ReaderState:
    position: int  # its checkpoint: every stored event up to here is in a chain (or parked)
    head: int  # the highest position recorded
    seconds_behind: float  # how long ago the first event it has not applied was recorded (0 when caught up)
    last_error: str  # why its last batch failed; empty once a batch succeeds


def audit_reader_state() -> ReaderState:
    """Where the audit chain's position reader stands, and whether it is failing."""
    lag = reader_lag.lag(READER)
    return ReaderState(lag.position, lag.head, lag.seconds, lag.last_error)


def audit_chain_shortfall(*, tenant_id: UUID, upto: int) -> int:
    """How many of `tenant_id`'s stored events up to position `upto` are missing from its chain.

    Events the reader parked (it could not read them) are not expected in the chain. Events of
    archived months count as stored (each was read by the reader before its month was archived).
    Negative when the chain holds more entries there than there are stored events.
    """
    parked = ParkedEvent.objects.filter(reader=READER, position__lte=upto).values("stored_event_id")
    stored = StoredEvent.objects.filter(tenant_id=tenant_id, position__lte=upto).exclude(id__in=parked).count()
    # Archived months: their events were all read by the reader before they were archived.
    for month in ArchivedMonth.objects.all():
        counts = month.tenants.get(str(tenant_id), {})
        stored += counts.get("events", 0) - counts.get("parked", {}).get(READER, 0)
    return stored - AuditEntry.objects.filter(tenant_id=tenant_id, position__lte=upto).count()


def audit_chain_heads(query: AuditChainHeads) -> dict[UUID, tuple[int, str]]:
    """Each named tenant's chain length and head hash up to position `query.upto` (tenants without
    entries there are left out)."""
    last = (
        AuditEntry.objects.filter(tenant_id=OuterRef("tenant_id"), position__lte=query.upto)
        .order_by("-sequence")
        .values("sequence")[:1]
    )
    rows = AuditEntry.objects.filter(tenant_id__in=query.tenant_ids, sequence=Subquery(last))
    return {t: (sequence, hash_) for t, sequence, hash_ in rows.values_list("tenant_id", "sequence", "hash")}


def audit_archived_heads(*, tenant_id: UUID) -> list[str]:
    """What became of the chain heads recorded when months of stored events were archived: one
    problem per head that is no longer the entry at its place in the chain (history rewritten
    after the month left the database)."""
    problems = []
    for month in ArchivedMonth.objects.order_by("month"):
        recorded = month.tenants.get(str(tenant_id), {})
        length, head = recorded.get("chain_length"), recorded.get("chain_head")
        if not head:
            continue
        entry = AuditEntry.objects.filter(tenant_id=tenant_id, sequence=length).values_list("hash", flat=True).first()
        if entry != head:
            problems.append(
                f"entry #{length} is no longer the head {head} recorded when {month.month:%Y-%m} was archived"
            )
    return problems


def _entries(tenant_id: UUID) -> Iterator[dict]:
    """The chain in sequence order, a chunk at a time (keyset pages, whatever its length)."""
    after = 0
    fields = ["id", *CONTENT_FIELDS, "previous_hash", "hash"]
    while True:
        chunk = list(
            AuditEntry.objects.filter(tenant_id=tenant_id, sequence__gt=after)
            .order_by("sequence")
            .values(*fields)[:CHUNK]
        )
        full, after = len(chunk) == CHUNK, chunk[-1]["sequence"] if chunk else after
        yield from chunk
        del chunk  # one page in memory at a time
        if not full:
            return


def audit_chain_verify(*, tenant_id: UUID, expect_head: str | None = None) -> ChainReport:
    """Walk `tenant_id`'s chain; name the first entry that was altered, removed, inserted or moved.

    - altered: its content no longer gives its stored hash;
    - removed: a sequence number is missing;
    - inserted or moved: its `previous_hash` is not the hash of the entry before it.
    With `expect_head` (a head recorded elsewhere earlier), also report whether that hash is still
    an entry of the chain: a chain recomputed from the start after a rewrite no longer contains it.
    """
    previous, expected_sequence, length = GENESIS, 1, 0
    problem = ""
    found = None if expect_head is None else False
    for row in _entries(tenant_id):
        length += 1
        if found is False and row["hash"] == expect_head:
            found = True
        if problem:
            continue
        if row["sequence"] != expected_sequence:
            problem = f"entry #{expected_sequence} is missing (removed): the chain jumps to #{row['sequence']}"
        elif row["previous_hash"] != previous:
            problem = (
                f"entry #{row['sequence']} (event {row['event_id']}) does not follow entry #{row['sequence'] - 1}: "
                "an entry was inserted or moved here"
            )
        elif entry_hash(previous, {f: row[f] for f in CONTENT_FIELDS}) != row["hash"]:
            problem = f"entry #{row['sequence']} (event {row['event_id']}) was altered: its content no longer matches"
        previous = row["hash"]
        expected_sequence = row["sequence"] + 1
    return ChainReport(tenant_id, length, previous, problem, found)
