"""Deliveries that must wait cost no message: the sender ahead of them hands them on, the sweep
covers a sender that dies."""

from datetime import timedelta
from uuid import uuid4

import pytest
from django.core.management import call_command
from django.utils import timezone

from webhooks import services
from webhooks.models import WebhookDelivery
from webhooks.tests.factories import endpoint_with_secret, publish_confirmed
from webhooks.tests.receiver import Answer, Receiver, running

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _loopback_allowed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    settings.WEBHOOK_RETRY_SCHEDULE = [1, 1, 1]
    settings.WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT = 1


def webhook_messages(redis_broker) -> int:
    return redis_broker.llen("webhooks")


def test_later_events_of_a_subject_wait_without_a_message(tenant, redis_broker):
    redis_broker.flushdb()
    endpoint_with_secret(tenant=tenant, url="http://127.0.0.1:9/x")
    order_id = uuid4()
    publish_confirmed(tenant.pk, order_id)
    publish_confirmed(tenant.pk, order_id)
    publish_confirmed(tenant.pk)

    first, waiting, other_subject = WebhookDelivery.objects.order_by("position")
    assert first.enqueued_at is not None
    assert other_subject.enqueued_at is not None
    assert waiting.enqueued_at is None, "it could only be refused: no message, its turn comes from the first"
    assert webhook_messages(redis_broker) == 2


def test_a_sender_goes_on_with_the_endpoint_waiting_deliveries_each_subject_in_order(tenant, redis_broker):
    with running(Receiver(default=Answer(204))) as receiver:
        _endpoint, secret = endpoint_with_secret(tenant=tenant, url=receiver.url)
        order_id = uuid4()
        of_the_order = [str(publish_confirmed(tenant.pk, order_id).event_id) for _ in range(3)]
        other = str(publish_confirmed(tenant.pk).event_id)
        redis_broker.flushdb()  # the messages of the fan-out: this test sends by hand
        first = WebhookDelivery.objects.order_by("position").first()

        services.delivery_send(delivery_id=first.pk)

    sent = [c.get_id() for c in receiver.events(secret)]
    assert sorted(sent) == sorted([*of_the_order, other]), "each event once"
    assert [i for i in sent if i in of_the_order] == of_the_order, "the order's events in position order"
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"succeeded"}
    assert webhook_messages(redis_broker) == 0, "one task sent them all; nothing handed to the broker"


def test_a_busy_endpoint_hands_on_its_next_delivery_when_the_request_in_flight_ends(tenant, redis_broker):
    with running(Receiver(default=Answer(204))) as receiver:
        _endpoint, _ = endpoint_with_secret(tenant=tenant, url=receiver.url)
        publish_confirmed(tenant.pk)
        holder = WebhookDelivery.objects.get()
        WebhookDelivery.objects.filter(pk=holder.pk).update(leased_until=timezone.now() + timedelta(minutes=1))
        redis_broker.flushdb()

        publish_confirmed(tenant.pk)  # another subject: only the endpoint is busy
        waiting = WebhookDelivery.objects.exclude(pk=holder.pk).get()
        assert waiting.enqueued_at is None
        assert webhook_messages(redis_broker) == 0

        services.delivery_send(delivery_id=waiting.pk)  # a message that arrives anyway: refused, no resend
        waiting.refresh_from_db()
        assert (waiting.status, waiting.attempts, waiting.enqueued_at) == ("pending", 0, None)
        assert webhook_messages(redis_broker) == 0

        WebhookDelivery.objects.filter(pk=holder.pk).update(leased_until=None)  # the holder's request ends
        services.delivery_send(delivery_id=holder.pk)

    assert list(WebhookDelivery.objects.values_list("status", flat=True).distinct()) == ["succeeded"]
    assert len(receiver.received) == 2


def test_a_failed_attempt_does_not_end_the_batch_and_retries_alone(tenant, redis_broker):
    with running(Receiver([Answer(204), Answer(500)], default=Answer(204))) as receiver:
        endpoint_with_secret(tenant=tenant, url=receiver.url)
        for _ in range(3):
            publish_confirmed(tenant.pk)
        first, failing, third = WebhookDelivery.objects.order_by("position")
        redis_broker.flushdb()

        services.delivery_send(delivery_id=first.pk)

        assert [r.webhook_id for r in receiver.received] == [str(first.pk), str(failing.pk), str(third.pk)], (
            "the task went on past the failure"
        )
        for delivery in (first, failing, third):
            delivery.refresh_from_db()
        assert [(d.status, d.attempts) for d in (first, failing, third)] == [
            ("succeeded", 1),
            ("failed", 1),
            ("succeeded", 1),
        ]
        assert failing.last_status_code == 500
        assert failing.next_attempt_at > failing.last_attempt_at, "its own retry, planned by the schedule"
        assert webhook_messages(redis_broker) == 1, "only the failed one's retry goes to the broker"

        WebhookDelivery.objects.filter(pk=failing.pk).update(next_attempt_at=timezone.now())  # its retry is due
        services.delivery_send(delivery_id=failing.pk)

    assert [r.webhook_id for r in receiver.received[3:]] == [str(failing.pk)], "the retry sends it alone"
    for delivery in (first, failing, third):
        delivery.refresh_from_db()
    assert [(d.status, d.attempts) for d in (first, failing, third)] == [
        ("succeeded", 1),
        ("succeeded", 2),
        ("succeeded", 1),
    ]


def test_a_sender_keeps_its_connection_to_the_receiver(tenant, redis_broker):
    # 200 with its body: a 204 with a body (the receiver's default) would spoil a kept connection.
    with running(Receiver(default=Answer(200), keep_alive=True)) as receiver:
        endpoint_with_secret(tenant=tenant, url=receiver.url)
        for _ in range(3):
            publish_confirmed(tenant.pk)
        redis_broker.flushdb()
        first = WebhookDelivery.objects.order_by("position").first()

        services.delivery_send(delivery_id=first.pk)
        publish_confirmed(tenant.pk)  # a later task, the same worker
        services.delivery_send(delivery_id=WebhookDelivery.objects.exclude(status="succeeded").get().pk)

    assert list(WebhookDelivery.objects.values_list("status", flat=True).distinct()) == ["succeeded"]
    assert len(receiver.received) == 4
    assert receiver.connections == 1, "one kept-alive connection for every request"


def test_the_sweep_leaves_waiting_deliveries_to_a_live_sender_and_takes_them_when_it_dies(tenant, redis_broker, capsys):
    redis_broker.flushdb()
    endpoint_with_secret(tenant=tenant, url="http://127.0.0.1:9/x")
    publish_confirmed(tenant.pk)
    publish_confirmed(tenant.pk)
    holder, waiting = WebhookDelivery.objects.order_by("position")
    long_ago = timezone.now() - timedelta(minutes=10)
    WebhookDelivery.objects.filter(pk=waiting.pk).update(next_attempt_at=long_ago, enqueued_at=None)
    WebhookDelivery.objects.filter(pk=holder.pk).update(leased_until=timezone.now() + timedelta(minutes=1))

    call_command("send_due_webhooks", "--once", "--verbosity", "2")
    assert "handed" not in capsys.readouterr().out, "the sender in flight hands it on"

    WebhookDelivery.objects.filter(pk=holder.pk).update(leased_until=long_ago)  # that sender died
    call_command("send_due_webhooks", "--once", "--verbosity", "2")
    assert "handed" in capsys.readouterr().out
    assert WebhookDelivery.objects.get(pk=waiting.pk).enqueued_at is not None
