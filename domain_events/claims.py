"""Claims: the right to run one delivery, proved by the lease token on its row."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID


@dataclass(frozen=True)
class Claim:
    """The right to run one delivery: its id and the lease token that must still be on it.

    Every update of a claimed row is fenced by the token: a holder whose lease ran out and was
    taken over changes nothing.
    """

    delivery_id: int
    token: UUID
    handler: str
    # The trace context its event was published in (`core.tracing`): a Celery message sent for it
    # carries it, so the worker's task joins that trace.
    traceparent: str | None = None
    # Its event's `recorded_at`, the deliveries' partition key: statements on the row name it, so
    # that PostgreSQL searches that month's partition alone. None from a message sent without it.
    event_recorded_at: datetime | None = None


def months_of(recorded: Iterable[datetime | None]) -> list[datetime] | None:
    """The distinct partition keys of some deliveries, to name beside their ids; None when one is
    not known (the ids alone then find the rows, in every month)."""
    found = set(recorded)
    if None in found:
        return None
    return sorted(found)
