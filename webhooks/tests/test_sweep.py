"""`send_due_webhooks`: the sweep hands on due deliveries that have no live message, and only those."""

import base64
import json
import sys
from collections import Counter
from datetime import timedelta
from uuid import uuid4

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from domain_events import probes
from domain_events.models import QueueMark
from webhooks.models import WebhookDelivery
from webhooks.services import deliveries_enqueue_due
from webhooks.services.queue import SEND_WEBHOOK
from webhooks.tasks import send_webhook
from webhooks.tests.factories import endpoint_with_secret, publish_confirmed

pytestmark = pytest.mark.django_db(transaction=True)

WEBHOOK_QUEUE = "webhooks"  # where `CELERY_TASK_ROUTES` sends the webhook messages


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


def queued(redis_broker) -> list[tuple[str, list, dict]]:
    """The messages waiting in the webhooks queue of the Redis broker, oldest first: (task, args, kwargs)."""
    messages = []
    for raw in reversed(redis_broker.lrange(WEBHOOK_QUEUE, 0, -1)):  # kombu pushes left, workers pop right
        message = json.loads(raw)
        args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        messages.append((message["headers"]["task"], args, kwargs))
    return messages


def messages_per_delivery(redis_broker) -> Counter:
    return Counter(args[0] for task, args, _ in queued(redis_broker) if task == SEND_WEBHOOK)


def test_a_queue_minutes_behind_keeps_one_message_per_delivery_and_a_lost_one_is_sent_again_on_proof(
    tenant, settings, redis_broker
):
    """No worker runs (stopped, or busy with a backlog): the sweep cannot tell those messages from
    lost ones by their age, and resending them on age alone flooded the queue. It sends a probe
    instead; a message deleted from Redis is sent again once a worker has started a later one."""
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    redis_broker.flushdb()
    probes._marked.clear()
    with time_machine.travel(timezone.now() - timedelta(minutes=2), tick=True):
        endpoint_with_secret(tenant=tenant, url="http://127.0.0.1:9/x")
        for _ in range(20):
            publish_confirmed(tenant.pk)
    deliveries = [str(pk) for pk in WebhookDelivery.objects.order_by("position").values_list("pk", flat=True)]
    assert len(deliveries) == 20
    assert messages_per_delivery(redis_broker) == dict.fromkeys(deliveries, 1)

    for _ in range(5):
        deliveries_enqueue_due()
    assert messages_per_delivery(redis_broker) == dict.fromkeys(deliveries, 1), "one message per delivery"
    assert [task for task, _, _ in queued(redis_broker)].count("domain_events.mark_queue") == 1, "one probe"

    # The oldest message is lost (a worker died holding it, or Redis lost it): nothing proves it yet.
    lost = redis_broker.rpop(WEBHOOK_QUEUE)
    assert json.loads(base64.b64decode(json.loads(lost)["body"]))[0] == [deliveries[0]]
    deliveries_enqueue_due()
    assert deliveries[0] not in messages_per_delivery(redis_broker)

    # A worker starts the next message: sent later down the same queue, it proves the first lost.
    args, kwargs, _ = json.loads(base64.b64decode(json.loads(redis_broker.rpop(WEBHOOK_QUEUE))["body"]))
    send_webhook.apply(args=args, kwargs=kwargs)
    assert QueueMark.objects.get(queue=WEBHOOK_QUEUE).started_sent_at.isoformat() == kwargs["sent_at"]
    deliveries_enqueue_due()
    # That task went on past its failure with the endpoint's next deliveries: each has its retry too.
    counts = messages_per_delivery(redis_broker)
    assert counts[deliveries[0]] == 1, "the lost one sent again, once"
    assert set(counts) == set(deliveries)


def test_a_delivery_whose_sender_died_holding_its_lease_is_sent_again_once_the_lease_runs_out(
    tenant, settings, redis_broker
):
    """Its message was taken (the sender claimed the delivery, then was SIGKILLed): nothing on the
    queue is left to prove lost, and the expired lease is the proof."""
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    redis_broker.flushdb()
    endpoint_with_secret(tenant=tenant, url="http://127.0.0.1:9/x")
    publish_confirmed(tenant.pk)
    redis_broker.delete(WEBHOOK_QUEUE)  # the sender took its message
    now = timezone.now()
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=now - timedelta(seconds=30), enqueued_at=now - timedelta(seconds=30), leased_until=now
    )
    assert deliveries_enqueue_due() == 1
    assert messages_per_delivery(redis_broker) == {str(delivery.pk): 1}
