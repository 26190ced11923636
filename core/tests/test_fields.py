"""Encryption at rest: a changed key is a clear error, and a rotated key list still reads old values."""

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from core.fields import decrypt, encrypt


def test_a_changed_key_is_a_clear_error_and_a_rotated_key_list_still_reads_old_values(settings):
    settings.FIELD_ENCRYPTION_KEYS = []  # written under the SECRET_KEY-derived key, as before the setting
    token = encrypt("whsec_x")
    # Values written under the SECRET_KEY-derived key stay readable while SECRET_KEY is unchanged.
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    assert decrypt(token) == "whsec_x"
    settings.SECRET_KEY = "a-changed-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
    with pytest.raises(ImproperlyConfigured, match="cannot be read with the configured keys"):
        decrypt(token)
    old = settings.FIELD_ENCRYPTION_KEYS[0]
    token = encrypt("whsec_y")
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), old]
    assert decrypt(token) == "whsec_y"
