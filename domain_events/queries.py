"""Queries: synchronous questions one module answers for another, without importing it.

A query is a frozen dataclass; exactly one module registers the answer with
`event_bus.answer(QueryType, fn)` in its `AppConfig.ready()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID


@dataclass(frozen=True, kw_only=True)
class Query:
    pass


@dataclass(frozen=True, kw_only=True)
class ProductQuote:
    sku: str
    title: str
    unit_price: Decimal


@dataclass(frozen=True, kw_only=True)
class QuoteProducts(Query):
    """The catalog's current title and price for each known sku of a tenant.

    Answer: `dict[str, ProductQuote]`; skus the catalog does not know are absent.
    """

    tenant_id: UUID
    skus: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ApplyShipmentNotice(Query):
    """A command: apply the distributor's notice about one order of a tenant (the orders module answers).

    `kind` is `shipped`, `delivered` or `lost`; `occurred_at` is when the distributor saw it. Runs in the
    caller's transaction, so the caller records the notice with its effect. Answer: a `NoticeOutcome`.
    """

    tenant_id: UUID
    order_id: UUID
    kind: str
    tracking_number: str
    occurred_at: datetime


@dataclass(frozen=True, kw_only=True)
class NoticeOutcome:
    """What a notice did: `applied` (`events` names what it recorded), `nothing_to_do` (the order is
    already there), or `parked` with the `reason` it cannot be applied."""

    status: str
    reason: str = ""
    events: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class AuditChainHeads(Query):
    """Each tenant's audit chain up to position `upto`: its length and head hash there (the audit
    module answers).

    Asked when a month of stored events is archived, so the chain stays verifiable without them.
    Answer: `dict[UUID, tuple[int, str]]` for the tenants named that have entries there.
    """

    tenant_ids: tuple[UUID, ...]
    upto: int
