"""The integration broker end to end: orders over HTTP, a Celery worker, two relays publishing to
the real RabbitMQ, and the way to the broker cut in the middle of the run."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

from domain_events.models import Checkpoint, StoredEvent
from integrations.apps import BROKER_READER
from integrations.tests.consumer import BrokerConsumer
from testsupport.processes import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ORDERS = "/api/v1/orders/"


def place(api) -> str:
    response = api.post(
        ORDERS, {"items": [{"sku": "EMMA-1", "quantity": 1}], "payment_token": "tok_visa"}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_a_consumer_of_order_events_gets_each_once_in_order_across_a_broker_outage(
    processes, broker_proxy, broker_ledger, rabbitmq_url, tenant, staff_api, customer_api
):
    broker = {
        "INTEGRATION_BROKER_URL": broker_proxy.url,
        "INTEGRATION_BROKER_RETRY_SCHEDULE": "1",
        "INTEGRATION_BROKER_LEDGER": broker_ledger,
    }
    processes.worker(concurrency=2)
    processes.relay("relay-1", **broker)
    processes.relay("relay-2", **broker)
    wait_until(lambda: Checkpoint.objects.filter(name=BROKER_READER).exists(), what="the broker reader to start")
    consumer = BrokerConsumer(rabbitmq_url, "order.*", tenant_ids={str(tenant.id)})
    try:
        response = staff_api.post(
            "/api/v1/products/", {"sku": "EMMA-1", "title": "Emma", "price": "12.50", "stock": 100}, format="json"
        )
        assert response.status_code == 201, response.content

        order_ids = [place(customer_api) for _ in range(8)]
        wait_until(lambda: consumer.drain(), timeout=30, what="the first events at the broker")
        broker_proxy.down()
        order_ids += [place(customer_api) for _ in range(8)]
        wait_until(
            lambda: Checkpoint.objects.filter(name=BROKER_READER, attempts__gte=2).exists(),
            timeout=30,
            what="the relays to find the broker gone and try again",
        )
        stalled_at = Checkpoint.objects.get(name=BROKER_READER).position
        assert stalled_at < StoredEvent.objects.filter(type="order.placed", aggregate_id=order_ids[-1]).get().position
        broker_proxy.up()
        order_ids += [place(customer_api) for _ in range(4)]

        def all_confirmed() -> bool:
            return StoredEvent.objects.filter(type="order.confirmed", aggregate_id__in=order_ids).count() == 20

        wait_until(all_confirmed, timeout=90, interval=0.5, what="every order to be confirmed")
        expected = list(
            StoredEvent.objects.filter(tenant_id=tenant.id, type__startswith="order.")
            .order_by("position")
            .values_list("event_id", "position", "aggregate_id", "type")
        )
        assert len(expected) == 40
        wanted = {str(event_id) for event_id, *_ in expected}
        wait_until(lambda: {m.message_id for m in consumer.drain()} >= wanted, timeout=60, what="every order event")
        time.sleep(0.5)  # anything published twice would be here by now
        received = consumer.drain()
    finally:
        consumer.close()

    ids = [m.message_id for m in received]
    first_seen = list(dict.fromkeys(ids))
    assert set(first_seen) == wanted, "no event lost, none of another kind"
    assert first_seen == [str(event_id) for event_id, *_ in expected], "in position order"
    per_subject: dict[str, list[str]] = defaultdict(list)
    for message_id in first_seen:
        event = received[ids.index(message_id)].cloudevent
        per_subject[event["subject"]].append(event["type"])
    assert set(per_subject) == {str(o) for o in order_ids}
    assert all(types == ["order.placed", "order.confirmed"] for types in per_subject.values())
    assert len(ids) == len(first_seen), "each event once, even the one whose confirmation the outage swallowed"
    for message_id in set(ids):
        assert len({m.body for m in received if m.message_id == message_id}) == 1
