"""Creating tenants and their users; issuing, rotating and revoking their API tokens."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import ApplicationError, Conflict
from tenants.models import ApiToken, Tenant, User, token_key_hash


def tenant_create(*, slug: str, name: str | None = None, currency: str = "USD", timezone: str = "UTC") -> Tenant:
    """Create a bookstore. Raises `Conflict` if the slug is taken."""
    tenant = Tenant(
        slug=slug, name=name or slug.replace("-", " ").title(), currency=currency.upper(), timezone=timezone
    )
    tenant.full_clean(validate_unique=False)
    try:
        with transaction.atomic():
            tenant.save(force_insert=True)
    except IntegrityError:
        raise Conflict(f"A tenant with slug {slug!r} already exists.") from None
    return tenant


def user_create(
    *,
    tenant: Tenant,
    username: str,
    password: str | None = None,
    is_staff: bool = False,
    email: str = "",
    validate_password: bool = True,
) -> tuple[User, IssuedToken]:
    """Create a user of `tenant` with an API token. Raises `Conflict` if the username is taken,
    and `ApplicationError` if the password fails `AUTH_PASSWORD_VALIDATORS` (unless
    `validate_password` is off: demo data)."""
    if not username:
        raise ApplicationError("A username is required.")
    user = User(username=username, tenant=tenant, is_staff=is_staff, email=email)
    try:
        # The username field's own checks (Django's validator: letters, digits and @/./+/-/_; at
        # most 150 characters), as the admin's forms apply them.
        user.clean_fields(exclude=[f.name for f in User._meta.fields if f.name != "username"])
    except ValidationError as exc:
        messages = exc.message_dict.get("username", exc.messages)
        raise ApplicationError(" ".join(messages), extra={"username": messages}) from None
    if password and validate_password:
        try:
            password_validation.validate_password(password, user)
        except ValidationError as exc:
            raise ApplicationError(" ".join(exc.messages), extra={"password": exc.messages}) from None
    try:
        with transaction.atomic():
            if password:
                user.set_password(password)
            else:
                user.set_unusable_password()
            user.save(force_insert=True)
            issued = token_issue(user=user)
    except IntegrityError:
        raise Conflict(f"A user named {username!r} already exists.") from None
    return user, issued


@dataclass(frozen=True)
class IssuedToken:
    """A token just issued, with its key: the only moment the key is known."""

    token: ApiToken
    key: str


def token_issue(*, user: User) -> IssuedToken:
    """A new API token for `user`, expiring after `API_TOKEN_TTL_DAYS`. Only its hash is stored."""
    key = secrets.token_hex(20)
    now = timezone.now()
    token = ApiToken.objects.create(
        user=user,
        key_hash=token_key_hash(key),
        key_prefix=key[:8],
        created_at=now,
        expires_at=now + timedelta(days=settings.API_TOKEN_TTL_DAYS),
    )
    return IssuedToken(token=token, key=key)


def token_rotate(*, token: ApiToken) -> IssuedToken:
    """A new token for the owner of `token`, which is revoked in the same transaction."""
    with transaction.atomic():
        token_revoke(token=token)
        return token_issue(user=token.user)


def token_revoke(*, token: ApiToken) -> None:
    """Revoke `token` (from now on it is a 401); revoking it again changes nothing."""
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def user_tokens_revoke(*, user: User) -> int:
    """Revoke every token of `user` still in force (a password change, an operator's action).
    Returns how many were revoked."""
    return ApiToken.objects.filter(user=user, revoked_at__isnull=True).update(revoked_at=timezone.now())
