"""Tenants (bookstores) and their users."""

from __future__ import annotations

import hashlib
import uuid
import zoneinfo

from django.contrib.auth.models import AbstractUser
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone


def _timezone_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in sorted(zoneinfo.available_timezones())]


class Tenant(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    currency = models.CharField(
        max_length=3, default="USD", validators=[RegexValidator(r"^[A-Z]{3}$", "An ISO 4217 code such as USD.")]
    )
    timezone = models.CharField(max_length=64, default="UTC", choices=_timezone_choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name


class User(AbstractUser):
    """A user belongs to exactly one tenant; `is_staff` makes them the bookstore's staff.

    Superusers (operators) may have no tenant and see every tenant in the admin.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, null=True, blank=True, related_name="users")

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"


def token_key_hash(key: str) -> str:
    """What is stored of an API token: its SHA-256. A key is 160 random bits, so a fast hash is
    enough; a slow one would cost every API request."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiToken(models.Model):
    """An API token of a user. Only the hash of its key is stored: the key itself is shown once,
    in the response (or the command output) that issued it, and never again."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    # The key's first characters, so that people can tell tokens apart without the key.
    key_prefix = models.CharField(max_length=8, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"
        indexes = [models.Index(fields=["user", "revoked_at"], name="apitoken_user_revoked")]

    def __str__(self) -> str:
        return f"{self.key_prefix}… of {self.user_id}"

    def is_usable(self, now=None) -> bool:
        """Neither revoked nor expired."""
        return self.revoked_at is None and self.expires_at > (now or timezone.now())
