"""The hash chain: the canonical content of an entry and how its hash is computed.

Kept apart from services and the verifier so that both compute exactly the same thing.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

# The hash before a tenant's first entry.
GENESIS = "0" * 64


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def canonical(content: dict[str, Any]) -> str:
    """Sorted keys, no whitespace, every value as a JSON string or number: one text per content."""
    return json.dumps(_plain(content), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(previous_hash: str, content: dict[str, Any]) -> str:
    return hashlib.sha256(f"{previous_hash}\n{canonical(content)}".encode()).hexdigest()


# The fields an entry's hash covers, besides the previous hash.
CONTENT_FIELDS = (
    "tenant_id",
    "sequence",
    "event_id",
    "event_type",
    "aggregate_id",
    "actor",
    "correlation_id",
    "causation_id",
    "payload",
    "occurred_at",
    "position",
)
