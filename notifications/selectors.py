"""Reads of the e-mail log."""

from __future__ import annotations

from uuid import UUID

from notifications.models import EmailMessage


def email_list_for_order(*, tenant_id: UUID, order_id: UUID) -> list[EmailMessage]:
    """The e-mails about one of the tenant's orders, oldest first."""
    return list(EmailMessage.objects.filter(tenant_id=tenant_id, order_id=order_id).order_by("created_at"))
