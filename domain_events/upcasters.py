"""Upcasters: each turns one stored version of an event type into the next."""

from domain_events.registry import Payload, registry


@registry.upcaster("inventory.stock_adjusted", from_version=1)
def stock_adjusted_v1_to_v2(payload: Payload) -> Payload:
    """v1 called the change `delta` and had no reason; every v1 adjustment was a restock."""
    data = dict(payload)
    data["quantity_change"] = data.pop("delta")
    data.setdefault("reason", "restock")
    return data
