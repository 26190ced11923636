"""A relay's batch fans its events out together: one query and one insert for all of them, and each
delivery waits for what it would have waited for had the events been fanned out one by one."""

from uuid import uuid4

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from domain_events.executor import run_due_here
from webhooks.models import WebhookDelivery
from webhooks.services.fan_out import deliveries_fan_out
from webhooks.tests.factories import endpoint_with_secret, publish_confirmed, send_due_now
from webhooks.tests.receiver import Answer, Receiver, running

pytestmark = pytest.mark.django_db(transaction=True)

FAN_OUT = "webhooks.queue_webhook_deliveries"


def test_a_batch_fans_out_in_one_statement_and_later_events_of_a_subject_wait_for_the_first(tenant, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
    a, b, c = uuid4(), uuid4(), uuid4()
    with running(Receiver(default=Answer(204))) as receiver:
        endpoint, secret = endpoint_with_secret(tenant=tenant, url=receiver.url)
        # C's first event is fanned out on its own, and its delivery is still open.
        publish_confirmed(tenant.pk, order_id=c)
        assert run_due_here(10, [FAN_OUT]).succeeded == 1
        events = [publish_confirmed(tenant.pk, order_id=subject) for subject in (a, b, a, c)]

        with CaptureQueriesContext(connection) as queries:
            assert run_due_here(10, [FAN_OUT]).succeeded == 4

        statements = [q["sql"] for q in queries.captured_queries]
        assert sum("AS event_n" in s for s in statements) == 1
        assert sum(s.startswith('INSERT INTO "webhooks_webhookdelivery"') for s in statements) == 1
        made = {d.event_id: d for d in WebhookDelivery.objects.filter(event_id__in=[e.event_id for e in events])}
        first_a, first_b, second_a, second_c = (made[e.event_id] for e in events)
        assert first_a.enqueued_at is not None
        assert first_b.enqueued_at is not None
        # Behind A's first, in the same batch; behind C's first, in the database: no message.
        assert second_a.enqueued_at is None
        assert second_c.enqueued_at is None
        assert [d.position for d in (first_a, first_b, second_a, second_c)] == sorted(
            d.position for d in (first_a, first_b, second_a, second_c)
        )

        send_due_now()

    assert set(WebhookDelivery.objects.filter(endpoint=endpoint).values_list("status", flat=True)) == {"succeeded"}
    sent = [r.verified(secret) for r in receiver.received]
    for subject in (a, c):
        positions = [int(e.get_extension("sequence")) for e in sent if e.get_subject() == str(subject)]
        assert len(positions) == 2
        assert positions == sorted(positions)


def test_a_fan_out_run_again_writes_nothing_and_asks_for_no_message(tenant, settings):
    """The deliveries already there are neither written again nor handed to the broker again."""
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
    endpoint_with_secret(tenant=tenant, url="http://127.0.0.1:9/x")
    event = publish_confirmed(tenant.pk)
    assert run_due_here(10, [FAN_OUT]).succeeded == 1
    [first] = WebhookDelivery.objects.filter(event_id=event.event_id)

    with transaction.atomic():
        again = deliveries_fan_out(event=event)
        queued = list(connection.run_on_commit)

    assert again == []
    assert queued == []
    assert list(WebhookDelivery.objects.filter(event_id=event.event_id)) == [first]
