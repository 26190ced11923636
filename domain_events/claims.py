"""Claims: the right to run one delivery, proved by the lease token on its row."""

from __future__ import annotations

from dataclasses import dataclass
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
