"""Queries: synchronous questions one module answers for another, without importing it.

A query is a frozen dataclass; exactly one module registers the answer with
`event_bus.answer(QueryType, fn)` in its `AppConfig.ready()`.
"""

from __future__ import annotations

from dataclasses import dataclass
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
