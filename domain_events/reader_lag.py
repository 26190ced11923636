"""How far each position reader is behind the readers' head, in positions and seconds (the admin,
`/metrics`, `check_projections`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from domain_events.head import head
from domain_events.models import Checkpoint, StoredEvent
from domain_events.subscriptions import subscriptions
from domain_events.tracking import LIVE, checkpoint_name


@dataclass(frozen=True)
class Lag:
    name: str
    position: int
    head: int
    positions: int  # how many positions behind the head
    seconds: float  # how old the first event it has not applied is (0 when caught up)
    last_error: str
    updated_at: datetime | None


def lag(name: str, *, target: str = LIVE) -> Lag:
    """How far `name` is behind the head, in positions and seconds."""
    checkpoint = Checkpoint.objects.filter(name=checkpoint_name(name, target)).first()
    position = checkpoint.position if checkpoint else 0
    top = head()
    seconds = 0.0
    if top > position:
        first = (
            StoredEvent.objects.filter(position__gt=position).order_by("position").values_list("recorded_at", flat=True)
        ).first()
        if first is not None:
            seconds = max(0.0, (timezone.now() - first).total_seconds())
    return Lag(
        name,
        position,
        top,
        max(0, top - position),
        seconds,
        checkpoint.last_error if checkpoint else "",
        checkpoint.updated_at if checkpoint else None,
    )


def lags() -> list[Lag]:
    """Every reader's lag, for the admin and `/metrics`."""
    return [lag(t.name) for t in subscriptions.trackers()]
