"""Fixtures for the orders tests: a catalog double that answers `QuoteProducts`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from uuid import UUID

import pytest

from domain_events.bus import event_bus
from domain_events.queries import ProductQuote, QuoteProducts


class FakeCatalog:
    """Answers `QuoteProducts` from products added by the test, and records every question."""

    def __init__(self) -> None:
        self.products: dict[tuple[UUID, str], ProductQuote] = {}
        self.questions: list[QuoteProducts] = []
        self.before_answer: Callable[[QuoteProducts], None] | None = None

    def add(self, tenant, sku: str, price: str, title: str | None = None) -> ProductQuote:
        quote = ProductQuote(sku=sku, title=title or f"Title of {sku}", unit_price=Decimal(price))
        self.products[(tenant.id, sku)] = quote
        return quote

    def __call__(self, query: QuoteProducts) -> dict[str, ProductQuote]:
        self.questions.append(query)
        if self.before_answer is not None:
            self.before_answer(query)
        return {
            sku: self.products[(query.tenant_id, sku)] for sku in query.skus if (query.tenant_id, sku) in self.products
        }


@pytest.fixture
def catalog(tenant) -> Iterator[FakeCatalog]:
    """Replaces whatever answers `QuoteProducts` for one test; restored afterwards.

    The tenant's catalog holds BOOK-1 at 12.50 and BOOK-2 at 7.99.
    """
    fake = FakeCatalog()
    fake.add(tenant, "BOOK-1", "12.50", title="Emma")
    fake.add(tenant, "BOOK-2", "7.99", title="Persuasion")
    with event_bus.answering(QuoteProducts, fake):
        yield fake
