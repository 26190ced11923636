"""Model fields every module may use."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

# Fernet tokens start with the version byte 0x80, base64-encoded.
TOKEN_PREFIX = "gAAAA"  # noqa: S105 (a format marker, not a secret)


def _fernet() -> MultiFernet:
    """The keys from `FIELD_ENCRYPTION_KEYS` (newest first), else one derived from `SECRET_KEY`.

    A new key goes first; older ones still decrypt until every value has been written again.
    """
    keys = list(getattr(settings, "FIELD_ENCRYPTION_KEYS", None) or [])
    if not keys:
        digest = hashlib.sha256(b"shelfwise field encryption\0" + settings.SECRET_KEY.encode()).digest()
        keys = [base64.urlsafe_b64encode(digest).decode()]
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(f"FIELD_ENCRYPTION_KEYS: {exc}") from exc


def encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "an encrypted value cannot be read with the configured keys (SECRET_KEY or FIELD_ENCRYPTION_KEYS changed?)"
        ) from None


class EncryptedTextField(models.TextField):
    """Text stored encrypted (Fernet, AES-128-CBC with an HMAC), so a dump of the database alone
    does not reveal it. Not searchable: every encryption of one value differs."""

    def from_db_value(self, value, expression, connection):
        return decrypt(value) if value is not None else None

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return encrypt(value) if value is not None else None
