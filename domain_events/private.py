"""Private fields at rest: an event's `private_fields` (such as an order's payment token) are
stored encrypted with the field encryption keys (`FIELD_ENCRYPTION_KEYS`), and opened again when
the event is loaded, so handlers, redrives and replays see the value as it was published.

They never leave the platform: CloudEvents (the events feed, webhooks, the integration broker)
leave them out and the audit trail skips them, as before. Events stored before their fields were
encrypted hold them in clear; they load as they are, and `rotate_field_encryption` encrypts them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.db import connection, transaction

from core.fields import TOKEN_PREFIX, decrypt, encrypt, reencrypt


def sealed(private: Iterable[str], data: Mapping[str, Any]) -> dict[str, Any]:
    """`data` with the values of its `private` fields encrypted."""
    names = frozenset(private)
    return {k: encrypt(v) if k in names and isinstance(v, str) and v else v for k, v in data.items()}


def opened(private: Iterable[str], data: Mapping[str, Any]) -> dict[str, Any]:
    """`data` with the encrypted values of its `private` fields decrypted (clear ones as they are)."""
    names = frozenset(private)
    return {k: decrypt(v) if k in names and _is_sealed(v) else v for k, v in data.items()}


def _is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(TOKEN_PREFIX)


def stored_events_reencrypt(*, batch_size: int = 500) -> int:
    """Write the private fields of every stored event again under the first key (encrypting those
    still in clear), one transaction per batch. Returns how many events changed. Run by
    `rotate_field_encryption`."""
    from domain_events.models import StoredEvent
    from domain_events.registry import registry

    private_types = {name: cls.private_fields for name, cls in registry.types().items() if cls.private_fields}
    changed, last = 0, 0
    while True:
        with transaction.atomic():
            rows = list(
                StoredEvent.objects.filter(type__in=private_types, pk__gt=last)
                .order_by("pk")
                .select_for_update(of=("self",))
                .only("pk", "type", "payload")[:batch_size]
                if connection.features.has_select_for_update_of
                else StoredEvent.objects.filter(type__in=private_types, pk__gt=last)
                .order_by("pk")
                .only("pk", "type", "payload")[:batch_size]
            )
            for row in rows:
                if not isinstance(row.payload, dict):
                    continue
                names = private_types[row.type]
                payload = {
                    k: (reencrypt(v) if _is_sealed(v) else encrypt(v)) if k in names and isinstance(v, str) and v else v
                    for k, v in row.payload.items()
                }
                if payload != row.payload:
                    StoredEvent.objects.filter(pk=row.pk).update(payload=payload)
                    changed += 1
        if len(rows) < batch_size:
            return changed
        last = rows[-1].pk
