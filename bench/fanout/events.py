"""Bench-only events, registered like every other event by subclassing `DomainEvent`."""

from dataclasses import dataclass
from typing import ClassVar
from uuid import UUID

from bench.fanout.names import CELERY_FANOUT_TYPE, FANOUT_TYPE
from domain_events.events import DomainEvent


@dataclass(frozen=True, kw_only=True)
class FanoutHappened(DomainEvent):
    """Handled by five `on_commit` handlers (fast path and relays)."""

    type: ClassVar[str] = FANOUT_TYPE
    aggregate_field: ClassVar[str] = "subject_id"

    subject_id: UUID
    account: int
    note: str


@dataclass(frozen=True, kw_only=True)
class CeleryFanoutHappened(DomainEvent):
    """Handled by five `celery` handlers: one Celery task per (event, handler)."""

    type: ClassVar[str] = CELERY_FANOUT_TYPE
    aggregate_field: ClassVar[str] = "subject_id"

    subject_id: UUID
    account: int
    note: str
