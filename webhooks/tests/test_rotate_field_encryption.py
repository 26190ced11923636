"""`rotate_field_encryption`: stored secrets written again under the first key, so older keys and
the SECRET_KEY-derived one can go."""

from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection

from core.fields import decrypt, encrypt
from webhooks.models import WebhookSecret
from webhooks.tests.factories import endpoint_with_secret

pytestmark = pytest.mark.django_db

OLD, NEW = "old-field-key-0123456789abcdefghijklmnop", "new-field-key-0123456789abcdefghijklmnop"


def _stored(secret: WebhookSecret) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM webhooks_webhooksecret WHERE id = %s", [secret.pk])
        return cursor.fetchone()[0]


def test_the_first_key_encrypts_and_every_key_decrypts(settings):
    settings.FIELD_ENCRYPTION_KEYS = [OLD]
    token = encrypt("whsec_a")
    settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD]
    assert decrypt(token) == "whsec_a"
    newer = encrypt("whsec_b")
    settings.FIELD_ENCRYPTION_KEYS = [NEW]
    assert decrypt(newer) == "whsec_b"
    with pytest.raises(ImproperlyConfigured):
        decrypt(token)


def test_values_written_under_the_secret_key_stay_readable_once_keys_are_set_and_rotate_away(settings, tenant):
    settings.FIELD_ENCRYPTION_KEYS = []
    endpoint, plain = endpoint_with_secret(tenant=tenant)
    secret = WebhookSecret.objects.get(endpoint=endpoint)
    settings.FIELD_ENCRYPTION_KEYS = [NEW]
    assert WebhookSecret.objects.get(pk=secret.pk).secret == plain  # read with the SECRET_KEY key
    before = _stored(secret)

    call_command("rotate_field_encryption", stdout=StringIO())

    assert _stored(secret) != before
    settings.SECRET_KEY = "another-secret-key-after-rotation-0123456789abcdefghijklmnop"
    assert WebhookSecret.objects.get(pk=secret.pk).secret == plain  # now under NEW alone


def test_rotation_moves_values_from_an_old_key_to_the_new_one(settings, tenant):
    settings.FIELD_ENCRYPTION_KEYS = [OLD]
    endpoint, _ = endpoint_with_secret(tenant=tenant)
    secrets = {s.pk: s.secret for s in WebhookSecret.objects.filter(endpoint=endpoint)}
    assert secrets
    settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD]
    call_command("rotate_field_encryption", stdout=StringIO())
    settings.FIELD_ENCRYPTION_KEYS = [NEW]
    assert {s.pk: s.secret for s in WebhookSecret.objects.filter(endpoint=endpoint)} == secrets
