"""Writes of the inbound module: the distributor's secrets, and recording and applying its notices.

A notice is recorded in the inbox and applied in one transaction: the inbox row (keyed by the
bookstore and the sender's message id) is inserted first, so that a second copy of the message,
even one arriving at the same moment, waits on that key and then finds it taken; the notice is
applied to the order through the `ApplyShipmentNotice` command, which the orders module answers
in the same transaction. A message seen before is never applied again.
"""

from __future__ import annotations

import base64
import io
import logging
import secrets
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import serializers
from standardwebhooks import Webhook, WebhookVerificationError

from core.errors import ApplicationError
from core.parsers import StrictJSONParser
from core.serializers import StrictInputSerializer
from domain_events.bus import event_bus
from domain_events.queries import ApplyShipmentNotice
from inbound.models import MESSAGE_ID_MAX_LENGTH, DistributorSecret, InboxMessage, LostShipment
from tenants.models import Tenant

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"  # noqa: S105  (the Standard Webhooks prefix, not a secret)
SECRET_BYTES = 32
# After a rotation the old secret keeps verifying this long.
SECRET_OVERLAP = timedelta(hours=24)
NOTICE_KINDS = ("shipped", "delivered", "lost")
TRACKING_NUMBER_MAX_LENGTH = 100
BODY_KEPT = 10_000


# --- secrets ---------------------------------------------------------------------------------


@transaction.atomic
def distributor_secret_rotate(*, tenant: Tenant) -> str:
    """A new secret for the distributor to sign `tenant`'s notices with, returned this once; the
    current ones keep verifying for `SECRET_OVERLAP`, expired ones are deleted."""
    now = timezone.now()
    DistributorSecret.objects.filter(tenant=tenant, expires_at__isnull=True).update(expires_at=now + SECRET_OVERLAP)
    DistributorSecret.objects.filter(tenant=tenant, expires_at__lte=now).delete()
    secret = SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()
    return DistributorSecret.objects.create(tenant=tenant, secret=secret).secret


def signed_tenant(*, tenant_slug: str, body: bytes, headers: dict[str, str]) -> Tenant | None:
    """The bookstore `tenant_slug` if `body` carries a valid Standard Webhooks signature (and a
    recent timestamp) made with one of its live secrets; None otherwise, whatever the cause."""
    tenant = Tenant.objects.filter(slug=tenant_slug).first()
    if tenant is None:
        return None
    now = timezone.now()
    live = DistributorSecret.objects.filter(tenant=tenant).exclude(expires_at__lte=now).order_by("-created_at")
    for stored in live:
        try:
            Webhook(stored.secret).verify(body, headers, json_parse=False)
        except (WebhookVerificationError, ValueError):
            continue
        return tenant
    return None


# --- notices ---------------------------------------------------------------------------------


class TextUuidField(serializers.UUIDField):
    """A UUID written as a JSON string (DRF's own also takes an integer)."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


class NoticeSerializer(StrictInputSerializer):
    """A shipment notice: exactly these four fields, each of its JSON type."""

    type = serializers.ChoiceField(choices=NOTICE_KINDS)
    order_id = TextUuidField()
    tracking_number = serializers.CharField(max_length=TRACKING_NUMBER_MAX_LENGTH)
    occurred_at = serializers.DateTimeField()


def notice_parse(body: bytes) -> dict[str, Any]:
    """The notice in `body` (JSON), or `ApplicationError` (400) with the project's messages: not
    JSON, not an object, a field missing, of the wrong type or unknown."""
    try:
        data = StrictJSONParser().parse(io.BytesIO(body))
    except Exception as exc:  # ParseError, an oversized or too wide body
        raise ApplicationError(f"The body is not a shipment notice: {exc}") from None
    serializer = NoticeSerializer(data=data)
    if not serializer.is_valid():
        raise ApplicationError("The body is not a shipment notice.", extra=serializer.errors)
    return serializer.validated_data


def notice_receive(
    *, tenant: Tenant, message_id: str, source: str, notice: dict[str, Any], body: bytes
) -> tuple[InboxMessage, bool]:
    """Record `notice` as `message_id` of `tenant` and apply it, in one transaction.

    Returns the inbox row and whether it is new; a message id seen before returns the row of its
    first copy, and nothing is applied again.
    """
    with transaction.atomic():
        message = _claim(
            tenant=tenant,
            message_id=message_id,
            source=source,
            kind=notice["type"],
            order_id=notice["order_id"],
            tracking_number=notice["tracking_number"],
            occurred_at=notice["occurred_at"],
            body=body,
        )
        if message is None:
            return InboxMessage.objects.get(tenant=tenant, message_id=message_id), False
        outcome = event_bus.ask(
            ApplyShipmentNotice(
                tenant_id=tenant.id,
                order_id=notice["order_id"],
                kind=notice["type"],
                tracking_number=notice["tracking_number"],
                occurred_at=notice["occurred_at"],
            )
        )
        message.status = outcome.status
        message.reason = outcome.reason[:500]
        message.events = list(outcome.events)
        message.save(update_fields=["status", "reason", "events"])
        if notice["type"] == "lost" and outcome.status == InboxMessage.Status.APPLIED:
            LostShipment.objects.create(
                tenant=tenant,
                order_id=notice["order_id"],
                tracking_number=notice["tracking_number"],
                reported_at=notice["occurred_at"],
                message=message,
            )
    logger.info(
        "distributor's %s notice %s for order %s: %s%s",
        notice["type"],
        message_id,
        notice["order_id"],
        message.status,
        f" ({message.reason})" if message.reason else "",
    )
    return message, True


def notice_park(
    *, tenant: Tenant | None, message_id: str, source: str, reason: str, body: bytes
) -> tuple[InboxMessage, bool]:
    """Record a message that is not a notice we can apply (a malformed body, an unknown bookstore)
    as parked with `reason`; a message id seen before is left as it is."""
    with transaction.atomic():
        message = _claim(
            tenant=tenant,
            message_id=message_id,
            source=source,
            body=body,
            status=InboxMessage.Status.PARKED,
            reason=reason[:500],
        )
        if message is None:
            return InboxMessage.objects.get(tenant=tenant, message_id=message_id), False
    logger.warning("distributor's message %s parked: %s", message_id, reason)
    return message, True


def message_id_check(message_id: str | None) -> str:
    """The sender's message id, or `ApplicationError`: without one a message cannot be deduplicated."""
    message_id = (message_id or "").strip()
    if not message_id or len(message_id) > MESSAGE_ID_MAX_LENGTH or "\x00" in message_id:
        raise ApplicationError(f"A message id of 1 to {MESSAGE_ID_MAX_LENGTH} characters is required.")
    return message_id


def lost_shipment_resolve(*, lost: LostShipment, by: str) -> None:
    """Close the staff task of a lost shipment."""
    if lost.resolved_at is None:
        lost.resolved_at = timezone.now()
        lost.resolved_by = by[:150]
        lost.save(update_fields=["resolved_at", "resolved_by"])


def _claim(*, tenant: Tenant | None, message_id: str, body: bytes, **fields: Any) -> InboxMessage | None:
    """Insert the inbox row of `message_id` (status to be set by the caller), or None if the key is
    taken: a concurrent copy waits on the unique key until the first commits, then lands here."""
    text = body[:BODY_KEPT].decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    fields.setdefault("status", InboxMessage.Status.PARKED)
    try:
        with transaction.atomic():
            return InboxMessage.objects.create(tenant=tenant, message_id=message_id, body=text, **fields)
    except IntegrityError:
        if not InboxMessage.objects.filter(tenant=tenant, message_id=message_id).exists():
            raise
        logger.info("distributor's message %s seen before: not applied again", message_id)
        return None
