"""Reads of the inbound module."""

from __future__ import annotations

from uuid import UUID

from inbound.models import InboxMessage, LostShipment

DASHBOARD_ROWS = 10


def lost_shipments_open(*, tenant_id: UUID) -> tuple[list[LostShipment], int]:
    """The tenant's lost shipments nobody has looked at (newest first, at most `DASHBOARD_ROWS`),
    and how many of its notices are parked."""
    lost = list(LostShipment.objects.filter(tenant_id=tenant_id, resolved_at__isnull=True)[:DASHBOARD_ROWS])
    parked = InboxMessage.objects.filter(tenant_id=tenant_id, status=InboxMessage.Status.PARKED).count()
    return lost, parked


def inbox_for_order(*, tenant_id: UUID, order_id: UUID) -> list[InboxMessage]:
    """The tenant's notices about one order, oldest first."""
    return list(InboxMessage.objects.filter(tenant_id=tenant_id, order_id=order_id).order_by("received_at"))
