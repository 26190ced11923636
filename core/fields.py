"""Model fields every module may use."""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Callable

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

# Fernet tokens start with the version byte 0x80, base64-encoded.
TOKEN_PREFIX = "gAAAA"  # noqa: S105 (a format marker, not a secret)

# A key of `FIELD_ENCRYPTION_KEYS` is any string at least this long.
MIN_KEY_LENGTH = 32


def _derived(material: str) -> Fernet:
    """The Fernet key derived from a configured string (a key of the list, or `SECRET_KEY`)."""
    digest = hashlib.sha256(b"shelfwise field encryption\0" + material.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def field_keys() -> MultiFernet:
    """The keys of `FIELD_ENCRYPTION_KEYS` in order, the first encrypting and every one decrypting,
    then one derived from `SECRET_KEY` that only decrypts.

    Values written before `FIELD_ENCRYPTION_KEYS` was set were encrypted with the `SECRET_KEY`
    key, so it stays readable until `rotate_field_encryption` has written them again under the
    first key; after that `SECRET_KEY` can change. Without the setting (development only: it is
    required with `DEBUG` off) the `SECRET_KEY` key also encrypts. A value written under an
    earlier `SECRET_KEY` is read by adding that key to the end of the list.
    """
    return _field_keys(tuple(getattr(settings, "FIELD_ENCRYPTION_KEYS", None) or ()), settings.SECRET_KEY)


@functools.lru_cache(maxsize=8)
def _field_keys(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    """The keys, derived once per configuration rather than on every value read or written."""
    short = [n for n, key in enumerate(keys, 1) if len(key) < MIN_KEY_LENGTH]
    if short:
        raise ImproperlyConfigured(f"FIELD_ENCRYPTION_KEYS: key {short[0]} is shorter than {MIN_KEY_LENGTH} characters")
    return MultiFernet([_derived(key) for key in [*keys, secret_key]])


def encrypt(value: str) -> str:
    return field_keys().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return field_keys().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "an encrypted value cannot be read with the configured keys (SECRET_KEY or FIELD_ENCRYPTION_KEYS changed?)"
        ) from None


def reencrypt(token: str) -> str:
    """`token` encrypted again under the first key (whichever configured key it was written with)."""
    try:
        return field_keys().rotate(token.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured("an encrypted value cannot be read with the configured keys") from None


# Encrypted values kept elsewhere than in an `EncryptedTextField` (inside JSON, say): the app that
# keeps them registers here, by name, a function that writes them all again under the first key
# and returns how many changed. `rotate_field_encryption` runs each.
REENCRYPTORS: dict[str, Callable[[], int]] = {}


def register_reencryptor(name: str, reencrypt_all: Callable[[], int]) -> None:
    REENCRYPTORS[name] = reencrypt_all


class EncryptedTextField(models.TextField):
    """Text stored encrypted (Fernet, AES-128-CBC with an HMAC), so a dump of the database alone
    does not reveal it. Not searchable: every encryption of one value differs."""

    def from_db_value(self, value, expression, connection):
        return decrypt(value) if value is not None else None

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return encrypt(value) if value is not None else None
