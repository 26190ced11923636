from dataclasses import dataclass
from typing import ClassVar
from uuid import UUID

from domain_events.events import DomainEvent


@dataclass(frozen=True, kw_only=True)
class ProbeHappened(DomainEvent):
    type: ClassVar[str] = "probe.happened"
    aggregate_field: ClassVar[str] = "probe_id"

    probe_id: UUID
    n: int


@dataclass(frozen=True, kw_only=True)
class ProbeFollowedUp(DomainEvent):
    """Published by a probe handler, to check causation and correlation."""

    type: ClassVar[str] = "probe.followed_up"
    aggregate_field: ClassVar[str] = "probe_id"

    probe_id: UUID
    n: int


@dataclass(frozen=True, kw_only=True)
class ProbeMeasured(DomainEvent):
    """Version 3; v1 stored `value` in centimetres as `cm`, v2 as `value_cm`, v3 in millimetres."""

    type: ClassVar[str] = "probe.measured"
    version: ClassVar[int] = 3
    aggregate_field: ClassVar[str] = "probe_id"

    probe_id: UUID
    value_mm: int
    unit_note: str


@dataclass(frozen=True, kw_only=True)
class ProbeCalledOut(DomainEvent):
    """Handled by a non-atomic handler that stands for a call to the outside world."""

    type: ClassVar[str] = "probe.called_out"
    aggregate_field: ClassVar[str] = "probe_id"

    probe_id: UUID
    n: int
