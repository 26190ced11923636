"""Sending a delivery: signed CloudEvents, retries with the same webhook-id, dead letters,
410 Gone, order per subject, and the private-network guard at delivery time."""

from datetime import timedelta
from decimal import Decimal
from uuid import uuid4

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from domain_events.bus import event_bus
from domain_events.context import acting_as
from domain_events.events import OrderConfirmed
from domain_events.models import StoredEvent
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services.fan_out import deliveries_fan_out
from webhooks.tests.factories import endpoint_with_secret, publish_confirmed, send_due_now
from webhooks.tests.receiver import Answer, Receiver, running

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _loopback_allowed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    settings.WEBHOOK_RETRY_SCHEDULE = [1, 1, 1]


def test_a_receiver_failing_twice_gets_the_third_attempt_with_the_same_webhook_id(tenant):
    with running(Receiver([Answer(500), Answer(502)])) as receiver:
        endpoint, secret = endpoint_with_secret(tenant=tenant, url=receiver.url)
        with acting_as("staff:5d1c2b3a-0000-4000-8000-000000000001"):
            event = publish_confirmed(tenant.pk)
        send_due_now()

    assert len(receiver.received) == 3
    assert len({r.webhook_id for r in receiver.received}) == 1
    cloudevent = receiver.received[2].verified(secret)
    assert cloudevent.get_id() == str(event.event_id)
    assert cloudevent.get_type() == "order.confirmed"
    assert cloudevent.get_subject() == str(event.order_id)
    assert len(cloudevent.get_extension("sequence")) == 20
    assert cloudevent.get_extension("actor") == "staff:5d1c2b3a-0000-4000-8000-000000000001"
    assert receiver.received[0].headers["content-type"] == "application/cloudevents+json"
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert str(delivery.pk) == receiver.received[0].webhook_id
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 3, 200)
    assert [a.status_code for a in delivery.attempt_log.all()] == [500, 502, 200]


def test_a_dead_receiver_ends_dead_and_a_redelivery_succeeds(tenant):
    from webhooks.services import delivery_redeliver

    with running(Receiver(default=Answer(500, body=b"x" * 5000))) as receiver:
        endpoint, secret = endpoint_with_secret(tenant=tenant, url=receiver.url)
        publish_confirmed(tenant.pk)
        send_due_now()
        delivery = WebhookDelivery.objects.get(endpoint=endpoint)
        assert (delivery.status, delivery.attempts) == ("dead", 4)
        assert len(delivery.attempt_log.first().response_body) == 1024, "only the first kilobyte is kept"

        receiver.default = Answer(204)
        delivery_redeliver(delivery=delivery)
        send_due_now()

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 5)
    assert len({r.webhook_id for r in receiver.received}) == 1
    receiver.received[-1].verified(secret)


def test_410_gone_disables_the_endpoint(tenant):
    with running(Receiver([Answer(410)])) as receiver:
        endpoint, _ = endpoint_with_secret(tenant=tenant, url=receiver.url)
        publish_confirmed(tenant.pk)
        send_due_now()
        publish_confirmed(tenant.pk)
        send_due_now()

    endpoint.refresh_from_db()
    assert not endpoint.is_active
    assert "410" in endpoint.disabled_reason
    assert len(receiver.received) == 1, "a disabled endpoint gets nothing more"
    assert list(WebhookDelivery.objects.values_list("status", flat=True)) == ["dead"]


def test_a_refused_connection_is_retried_then_dead(tenant):
    endpoint, _ = endpoint_with_secret(tenant=tenant, url="http://127.0.0.1:9/nothing-listens")
    publish_confirmed(tenant.pk)
    send_due_now()
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("dead", 4, None)
    assert "Connection" in delivery.last_error


def test_redirects_are_not_followed(tenant):
    with running(Receiver(default=Answer(302, headers={"Location": "http://127.0.0.1:9/"}))) as receiver:
        endpoint, _ = endpoint_with_secret(tenant=tenant, url=receiver.url)
        publish_confirmed(tenant.pk)
        send_due_now()
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert (delivery.status, delivery.last_status_code) == ("dead", 302)
    assert len(receiver.received) == 4


def test_one_subject_goes_out_in_position_order_while_its_first_event_is_retried(tenant):
    order_id = uuid4()
    with running(Receiver()) as receiver:
        _, secret = endpoint_with_secret(tenant=tenant, url=receiver.url)
        first = publish_confirmed(tenant.pk, order_id)
        second = publish_confirmed(tenant.pk, order_id)
        other = publish_confirmed(tenant.pk)
        receiver.fail_first = {str(first.event_id): 2}
        send_due_now()

    ids = [e.get_id() for e in receiver.events(secret)]
    first_id, second_id, other_id = str(first.event_id), str(second.event_id), str(other.event_id)
    assert ids.count(first_id) == 3
    assert ids.count(second_id) == 1
    last_of_first = len(ids) - 1 - ids[::-1].index(first_id)
    assert ids.index(second_id) > last_of_first, "the later event of the order waited for the first"
    assert ids.index(other_id) < last_of_first, "another order did not wait"
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"succeeded"}


def test_once_the_first_is_dead_the_later_events_of_its_subject_go_on(tenant, settings):
    settings.WEBHOOK_RETRY_SCHEDULE = [1]
    order_id = uuid4()
    with running(Receiver()) as receiver:
        _, secret = endpoint_with_secret(tenant=tenant, url=receiver.url)
        first = publish_confirmed(tenant.pk, order_id)
        second = publish_confirmed(tenant.pk, order_id)
        receiver.fail_first = {str(first.event_id): 2}
        send_due_now()
    ids = [e.get_id() for e in receiver.events(secret)]
    assert ids == [str(first.event_id), str(first.event_id), str(second.event_id)]
    assert WebhookDelivery.objects.get(event_id=first.event_id).status == "dead"


def test_retries_follow_the_schedule_from_the_start_of_each_round(tenant, settings):
    from webhooks.services import delivery_redeliver, delivery_send

    settings.WEBHOOK_RETRY_SCHEDULE = [600, 6000]
    settings.WEBHOOK_RETRY_JITTER = 0.2
    answers = [Answer(500), Answer(500), Answer(500), Answer(429, headers={"Retry-After": "99999"})]

    def waited(delivery: WebhookDelivery) -> float:
        delivery_send(delivery_id=delivery.pk)
        delivery.refresh_from_db()
        gap = (delivery.next_attempt_at - delivery.last_attempt_at).total_seconds()
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
        return gap

    with running(Receiver(answers)) as receiver:
        endpoint, _ = endpoint_with_secret(tenant=tenant, url=receiver.url)
        publish_confirmed(tenant.pk)
        delivery = WebhookDelivery.objects.get(endpoint=endpoint)
        assert 480 <= waited(delivery) <= 720, "the first step, spread by the jitter"
        assert 4800 <= waited(delivery) <= 7200, "the second step"
        delivery_redeliver(delivery=delivery)
        assert 480 <= waited(delivery) <= 720, "a redelivery starts at the first step again"
        assert waited(delivery) == 6000, "Retry-After is honoured up to the schedule's longest step"


def test_event_types_filter_what_an_endpoint_gets(tenant):
    with running(Receiver()) as receiver:
        endpoint_with_secret(tenant=tenant, url=receiver.url, event_types=["order.cancelled"])
        publish_confirmed(tenant.pk)
        send_due_now()
    assert receiver.received == []
    assert not WebhookDelivery.objects.exists()


def test_an_endpoint_gets_the_events_from_its_registration_on_however_late_the_fan_out_runs(tenant):
    # The relay runs the fan-out of an event recorded before the endpoint existed only afterwards:
    # the endpoint gets the later event, not that one.
    earlier = OrderConfirmed(tenant_id=tenant.pk, order_id=uuid4(), total_amount=Decimal("9.99"), currency="USD")
    endpoint, _secret = endpoint_with_secret(tenant=tenant, url="http://127.0.0.1:9/x")
    later = publish_confirmed(tenant.pk)
    with transaction.atomic():
        event_bus.publish(earlier)

    assert earlier.occurred_at < endpoint.created_at < later.occurred_at
    assert list(WebhookDelivery.objects.values_list("event_id", flat=True)) == [later.event_id]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_private_address_is_refused_at_delivery_time(tenant, settings, host):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    with running(Receiver()) as receiver:
        endpoint, _ = endpoint_with_secret(tenant=tenant, url=f"http://{host}:{receiver.port}/hooks")
        publish_confirmed(tenant.pk)
        send_due_now()
    assert receiver.received == [], "not a byte reaches a loopback receiver"
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert delivery.status == "dead"
    assert "loopback" in delivery.last_error
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).is_active


def test_a_rotated_secret_signs_alongside_the_old_one_for_a_day(tenant):
    from webhooks.services import endpoint_rotate_secret

    with running(Receiver()) as receiver:
        endpoint, old = endpoint_with_secret(tenant=tenant, url=receiver.url)
        new = endpoint_rotate_secret(endpoint=endpoint)
        publish_confirmed(tenant.pk)
        send_due_now()
    received = receiver.received[0]
    assert received.headers["webhook-signature"].count("v1,") == 2
    received.verified(old)
    received.verified(new)


def test_the_fan_out_run_by_the_executor_takes_the_events_position_from_it_and_a_direct_call_looks_it_up(tenant):
    """Both write the event's position on its delivery; only the direct call reads the events table."""
    endpoint_with_secret(tenant=tenant, url="http://127.0.0.1:9/x")
    with CaptureQueriesContext(connection) as run_by_executor:
        confirmed = publish_confirmed(tenant.pk)
    stored = StoredEvent.objects.get(event_id=confirmed.event_id)
    [fan_out] = [q["sql"] for q in run_by_executor.captured_queries if "AS event_n" in q["sql"]]
    assert StoredEvent._meta.db_table not in fan_out
    assert WebhookDelivery.objects.get(event_id=confirmed.event_id).position == stored.position

    WebhookDelivery.objects.all().delete()
    with CaptureQueriesContext(connection) as called_directly:
        [delivery] = deliveries_fan_out(event=confirmed)
    [fan_out] = [q["sql"] for q in called_directly.captured_queries if "AS event_n" in q["sql"]]
    assert StoredEvent._meta.db_table in fan_out
    assert delivery.position == stored.position
