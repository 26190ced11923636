"""`send_due_webhooks`: the sweep hands on due deliveries that have no live message, and only those."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from webhooks.models import WebhookDelivery
from webhooks.tests.factories import endpoint_with_secret, publish_confirmed

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_sweep_hands_on_due_deliveries_without_a_live_message_once(tenant, settings, redis_broker, capsys):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    redis_broker.flushdb()
    endpoint_with_secret(tenant=tenant, url="http://127.0.0.1:9/x")
    publish_confirmed(tenant.pk)
    publish_confirmed(tenant.pk)
    # One lost with its message long ago; one whose message was sent a moment ago.
    long_ago = timezone.now() - timedelta(minutes=10)
    lost, recent = WebhookDelivery.objects.order_by("position")
    WebhookDelivery.objects.filter(pk=lost.pk).update(next_attempt_at=long_ago, enqueued_at=long_ago)
    WebhookDelivery.objects.filter(pk=recent.pk).update(next_attempt_at=long_ago, enqueued_at=timezone.now())

    call_command("send_due_webhooks", "--once", "--verbosity", "2")
    assert "handed 1 webhook deliveries" in capsys.readouterr().out
    assert WebhookDelivery.objects.get(pk=lost.pk).enqueued_at > long_ago
    call_command("send_due_webhooks", "--once", "--verbosity", "2")
    assert "handed" not in capsys.readouterr().out, "just handed on: not again before the resend delay"
