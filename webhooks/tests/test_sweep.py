"""`send_due_webhooks`: the sweep hands on due deliveries that have no live message, and only those."""

import sys
from datetime import timedelta
from uuid import uuid4

import pytest
from django.core.management import call_command
from django.db import connection
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


def test_the_sweep_hands_on_only_the_first_open_delivery_of_a_subject(tenant, settings, redis_broker, capsys):
    """The later ones could only be refused (they wait for it), and are woken when it ends."""
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    redis_broker.flushdb()
    endpoint_with_secret(tenant=tenant, url="http://127.0.0.1:9/x")
    order_id = uuid4()
    publish_confirmed(tenant.pk, order_id)
    publish_confirmed(tenant.pk, order_id)
    publish_confirmed(tenant.pk)
    long_ago = timezone.now() - timedelta(minutes=10)
    WebhookDelivery.objects.update(next_attempt_at=long_ago, enqueued_at=long_ago)
    first, waiting, other_subject = WebhookDelivery.objects.order_by("position")

    call_command("send_due_webhooks", "--once", "--verbosity", "2")
    assert "handed 2 webhook deliveries" in capsys.readouterr().out
    assert WebhookDelivery.objects.get(pk=waiting.pk).enqueued_at == long_ago
    assert WebhookDelivery.objects.get(pk=first.pk).enqueued_at > long_ago
    assert WebhookDelivery.objects.get(pk=other_subject.pk).enqueued_at > long_ago

    WebhookDelivery.objects.filter(pk=first.pk).update(status=WebhookDelivery.Status.SUCCEEDED)
    WebhookDelivery.objects.filter(pk=first.pk).update(enqueued_at=long_ago)
    call_command("send_due_webhooks", "--once", "--verbosity", "2")
    assert "handed 1 webhook deliveries" in capsys.readouterr().out
    assert WebhookDelivery.objects.get(pk=waiting.pk).enqueued_at > long_ago


def test_the_sweep_outlives_a_lost_database_connection_and_goes_on_sweeping(tenant, settings, processes):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    sweep = processes.start(
        "sweep",
        [sys.executable, "manage.py", "send_due_webhooks", "--verbosity", "2"],
        WEBHOOK_SWEEP_INTERVAL="0.2",
        WEBHOOK_ALLOW_PRIVATE_NETWORKS="true",
    )
    sweep.wait_for_output("webhooks sweep running")
    # What a database restart does to every open connection: the server ends it.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    sweep.wait_for_output("webhooks sweep pass failed; retrying")

    endpoint_with_secret(tenant=tenant, url="http://127.0.0.1:9/x")
    publish_confirmed(tenant.pk)
    long_ago = timezone.now() - timedelta(minutes=10)
    WebhookDelivery.objects.update(next_attempt_at=long_ago, enqueued_at=long_ago)
    sweep.wait_for_output("handed 1 webhook deliveries")
