"""Creating tenants and their users."""

from __future__ import annotations

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from rest_framework.authtoken.models import Token

from core.errors import ApplicationError, Conflict
from tenants.models import Tenant, User


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
) -> tuple[User, Token]:
    """Create a user of `tenant` with an API token. Raises `Conflict` if the username is taken,
    and `ApplicationError` if the password fails `AUTH_PASSWORD_VALIDATORS` (unless
    `validate_password` is off: demo data)."""
    if not username:
        raise ApplicationError("A username is required.")
    user = User(username=username, tenant=tenant, is_staff=is_staff, email=email)
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
            token = Token.objects.create(user=user)
    except IntegrityError:
        raise Conflict(f"A user named {username!r} already exists.") from None
    return user, token


def user_token(*, user: User) -> Token:
    """The user's API token, created on first use."""
    token, _ = Token.objects.get_or_create(user=user)
    return token
