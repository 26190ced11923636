"""Reads of the payments module."""

from __future__ import annotations

from uuid import UUID

from payments.models import Payment, SimulatedCharge


def payment_get_for_order(*, tenant_id: UUID, order_id: UUID) -> Payment | None:
    """The payment of one of the tenant's orders, if it has one."""
    return Payment.objects.filter(tenant_id=tenant_id, order_id=order_id).first()


def simulated_charge_list_for_key(*, idempotency_key: str) -> list[SimulatedCharge]:
    """What the simulated provider recorded under an idempotency key (at most one charge)."""
    return list(SimulatedCharge.objects.filter(idempotency_key=idempotency_key))
