"""Endpoints and their signing secrets: registration, changes, rotation, and the checks of a URL
(including the guard against loopback and private addresses) and of event types."""

from __future__ import annotations

import base64
import secrets
import socket
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.postgres.expressions import ArraySubquery
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import OuterRef, QuerySet
from django.utils import timezone

from core.errors import ApplicationError, Conflict
from domain_events.events import published_event_types
from tenants.models import Tenant
from webhooks import transport
from webhooks.models import WebhookEndpoint, WebhookSecret

SECRET_PREFIX = "whsec_"  # noqa: S105  (the Standard Webhooks prefix, not a secret)
SECRET_BYTES = 32
# After a rotation the old secret keeps signing this long.
SECRET_OVERLAP = timedelta(hours=24)


class EndpointDisabled(Conflict):
    """The endpoint is disabled: enable it before sending to it again."""


def endpoint_url_validate(url: str) -> None:
    """Raise `ValidationError` on `url` unless it is http(s), names a host, carries no credentials,
    and (unless private networks are allowed) does not resolve to loopback or private space.

    Delivery checks the address again when it connects: a name may resolve elsewhere later.
    """
    problem = _url_problem(url)
    if problem:
        raise ValidationError({"url": [problem]})


def _url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "Enter a valid URL."
    if parts.scheme not in ("http", "https"):
        return "Use an http or https URL."
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "Leave credentials out of the URL; verify the webhook signature instead."
    if not parts.hostname:
        return "The URL needs a host."
    if settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS:
        return None  # every address is allowed: no lookup needed
    try:
        found = socket.getaddrinfo(parts.hostname, port or 443, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return None  # not resolvable now; delivery decides
    for *_, sockaddr in found:
        reason = transport.address_refusal(sockaddr[0])
        if reason:
            return f"The host resolves to {reason}."
    return None


def event_types_validate(event_types: Sequence[str]) -> None:
    """Raise `ValidationError` unless every type is a known event type."""
    known = {cls.type for cls in published_event_types()}
    unknown = sorted(set(event_types) - set(known))
    if unknown:
        raise ValidationError({"event_types": [f"Unknown event type: {t}." for t in unknown]})


def _new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


@transaction.atomic
def endpoint_create(
    *, tenant: Tenant, url: str, event_types: Sequence[str] = (), is_active: bool = True, description: str = ""
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; returns it and its first secret (shown to the caller this once).

    Raises `ValidationError` for a URL that may not be used or an unknown event type.
    """
    endpoint_url_validate(url)
    event_types_validate(event_types)
    endpoint = WebhookEndpoint.objects.create(
        tenant=tenant, url=url, event_types=list(event_types), is_active=is_active, description=description
    )
    secret = WebhookSecret.objects.create(endpoint=endpoint, secret=_new_secret())
    return endpoint, secret.secret


def endpoint_update(*, endpoint: WebhookEndpoint, **changes: object) -> WebhookEndpoint:
    """Change `url`, `event_types`, `is_active` or `description`. Enabling clears why it was
    disabled and since when it was failing.

    Raises `ValidationError` as `endpoint_create` does.
    """
    allowed = {"url", "event_types", "is_active", "description"}
    unknown = set(changes) - allowed
    if unknown:
        raise ApplicationError(f"cannot change {', '.join(sorted(unknown))}")
    if "url" in changes:
        endpoint_url_validate(str(changes["url"]))
    if "event_types" in changes:
        event_types_validate(list(changes["event_types"]))
    for name, value in changes.items():
        setattr(endpoint, name, list(value) if name == "event_types" else value)
    if changes.get("is_active"):
        # A fresh start: its failures before it was disabled do not count against it again.
        endpoint.disabled_reason = ""
        endpoint.failing_since = None
    endpoint.save()
    return endpoint


def endpoint_set_active(*, endpoint: WebhookEndpoint, is_active: bool) -> WebhookEndpoint:
    """Enable or disable an endpoint (the admin's actions)."""
    return endpoint_update(endpoint=endpoint, is_active=is_active)


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Remove the endpoint with its secrets and delivery history."""
    endpoint.delete()


@transaction.atomic
def endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> str:
    """A new signing secret; the current ones keep signing for `SECRET_OVERLAP`. Returns the new one."""
    now = timezone.now()
    WebhookSecret.objects.filter(endpoint=endpoint, expires_at__isnull=True).update(expires_at=now + SECRET_OVERLAP)
    WebhookSecret.objects.filter(endpoint=endpoint, expires_at__lte=now).delete()
    return WebhookSecret.objects.create(endpoint=endpoint, secret=_new_secret()).secret


def signing_secrets(endpoint_id: uuid.UUID, now: datetime) -> list[str]:
    return list(_signing(endpoint_id, now).values_list("secret", flat=True))


def with_signing_secrets(endpoints: QuerySet[WebhookEndpoint], now: datetime) -> QuerySet[WebhookEndpoint]:
    """`endpoints`, each with its `signing_secrets` read in the same query as `signing` (PostgreSQL)."""
    return endpoints.annotate(signing=ArraySubquery(_signing(OuterRef("pk"), now).values("secret")))


def _signing(endpoint_id, now: datetime) -> QuerySet[WebhookSecret]:
    return WebhookSecret.objects.filter(endpoint_id=endpoint_id).exclude(expires_at__lte=now).order_by("-created_at")
