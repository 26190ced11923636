"""Private fields (an order's payment token) are stored encrypted, loaded clear, never published."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from core.fields import TOKEN_PREFIX
from domain_events.bus import event_bus
from domain_events.cloudevents import to_cloudevent
from domain_events.models import StoredEvent
from domain_events.registry import registry
from domain_events.tests.test_events import order_placed

pytestmark = pytest.mark.django_db(transaction=True)

CARD = "tok_visa_4242_SECRET"


def raw_payload(event_id) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT payload::text FROM domain_events_storedevent WHERE event_id = %s", [event_id])
        return cursor.fetchone()[0]


def load(stored: StoredEvent):
    return registry.load(stored.type, stored.version, stored.payload, envelope=stored.envelope(), ref=stored.ref)


def test_a_payment_token_is_stored_encrypted_and_loaded_as_published(tenant):
    with transaction.atomic():
        event = event_bus.publish(order_placed(tenant_id=tenant.id, payment_token=CARD))
    assert CARD not in raw_payload(event.event_id)
    stored = StoredEvent.objects.get(event_id=event.event_id)
    assert stored.payload["payment_token"].startswith(TOKEN_PREFIX)
    assert load(stored).payment_token == CARD  # what handlers, redrives and replays see
    assert stored.readable_payload()["payment_token"] == "••••CRET"  # the admin: last four, as before
    assert CARD in stored.private_values()  # still masked by value in logs and error texts
    assert "payment_token" not in to_cloudevent(load(stored))["data"]  # the feed, webhooks, the broker


def test_rotation_encrypts_tokens_stored_in_clear_before_and_they_still_load(tenant, settings):
    with transaction.atomic():
        event = event_bus.publish(order_placed(tenant_id=tenant.id, payment_token=CARD))
    stored = StoredEvent.objects.get(event_id=event.event_id)
    StoredEvent.objects.filter(pk=stored.pk).update(payload={**stored.payload, "payment_token": CARD})
    assert load(StoredEvent.objects.get(pk=stored.pk)).payment_token == CARD  # an old, clear one loads

    settings.FIELD_ENCRYPTION_KEYS = ["a-new-first-key-0123456789abcdefghijklmnop", *settings.FIELD_ENCRYPTION_KEYS]
    call_command("rotate_field_encryption", stdout=StringIO())
    assert CARD not in raw_payload(event.event_id)
    settings.FIELD_ENCRYPTION_KEYS = settings.FIELD_ENCRYPTION_KEYS[:1]
    settings.SECRET_KEY = "another-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
    assert load(StoredEvent.objects.get(pk=stored.pk)).payment_token == CARD
