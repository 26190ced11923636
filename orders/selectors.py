"""Reads of the orders module."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from django.db.models import QuerySet

from orders.models import Order
from tenants.scoping import scope_to_user

if TYPE_CHECKING:
    from tenants.models import User


def order_list_for(*, user: User, status: str | None = None) -> QuerySet[Order]:
    """The orders `user` may see, newest first: staff see their tenant's, a customer their own."""
    orders = scope_to_user(Order.objects.all(), user)
    if not (user.is_staff or user.is_superuser):
        orders = orders.filter(customer=user)
    if status:
        orders = orders.filter(status=status)
    return orders.prefetch_related("items").order_by("-created_at", "-id")


def order_get_for(*, user: User, order_id: UUID) -> Order | None:
    """One order if `user` may see it (see `order_list_for`), else None."""
    return order_list_for(user=user).filter(pk=order_id).first()


def order_get(*, tenant_id: UUID, order_id: UUID) -> Order:
    """The tenant's order, for reactions to events about it; raises `Order.DoesNotExist`."""
    return Order.objects.get(tenant_id=tenant_id, pk=order_id)
