"""Signing secrets are stored encrypted: the database holds a Fernet token, the model the secret."""

import pytest
from django.db import connection

from core.fields import TOKEN_PREFIX
from webhooks.models import WebhookSecret
from webhooks.tests.factories import WebhookEndpointFactory

pytestmark = pytest.mark.django_db


def test_a_webhook_secret_is_stored_encrypted_and_read_back_plain(tenant):
    endpoint = WebhookEndpointFactory(tenant=tenant)
    WebhookSecret.objects.create(endpoint=endpoint, secret="whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=")
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM webhooks_webhooksecret WHERE endpoint_id = %s", [endpoint.pk])
        stored = cursor.fetchone()[0]
    assert stored.startswith(TOKEN_PREFIX)
    assert "whsec_" not in stored
    assert "c2VjcmV0" not in stored
    assert WebhookSecret.objects.get(endpoint=endpoint).secret == "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ="
