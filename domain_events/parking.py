"""Reading stored events for a position reader: each row's event at its current version; a row that
cannot be read is parked for the reader (`ParkedEvent`) and left out, so one bad stored event never
stops a projection, the audit chain or the integration broker."""

from __future__ import annotations

import logging

from core.masking import mask_error
from domain_events.events import DomainEvent
from domain_events.models import ENVELOPE_COLUMNS, ParkedEvent, private_values_in, stored_event_ref
from domain_events.registry import EventLoadError, registry
from domain_events.retry import kept_error

logger = logging.getLogger(__name__)

# A rebuild reads every stored event: as tuples, not model instances.
READ = ("position", "id", "type", "version", "payload", *ENVELOPE_COLUMNS)


def load_or_park(reader: str, rows: list[tuple]) -> list[tuple[tuple, DomainEvent]]:
    """The rows' events; a row that cannot be read is parked for `reader` (in the batch's
    transaction, so parking and passing it commit together) and left out, so one bad stored
    event never stops a projection, the audit chain or the integration broker."""
    loaded: list[tuple[tuple, DomainEvent]] = []
    parked: list[ParkedEvent] = []
    for row in rows:
        try:
            loaded.append((row, _load(row)))
        except EventLoadError as exc:
            # A payload that does not fit may be quoted in the error: its private values are masked.
            error = kept_error(mask_error(str(exc), private_values_in(row[2], row[4])))
            parked.append(ParkedEvent(reader=reader, position=row[0], stored_event_id=row[1], error=error))
    if parked:
        ParkedEvent.objects.bulk_create(parked, ignore_conflicts=True)
        for p in parked:
            logger.error("position reader %s parked stored event #%s: %s", reader, p.stored_event_id, p.error)
    return loaded


def _load(row: tuple) -> DomainEvent:
    """The current version of the event in a row of `_READ`."""
    _, pk, type_name, version, payload, *envelope = row
    return registry.load(
        type_name,
        version,
        payload,
        envelope=dict(zip(ENVELOPE_COLUMNS, envelope, strict=True)),
        ref=stored_event_ref(pk, type_name, version, envelope[0]),
    )
