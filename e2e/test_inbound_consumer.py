"""`manage.py consume_inbound` against the real RabbitMQ: acknowledgement after commit, a consumer
killed in between (the inbox absorbs the redelivery), the broker going away mid-stream, the
database going away (the notice waits for it, it is not dead-lettered), a poison message
dead-lettered, a clean stop."""

from __future__ import annotations

import json
import signal
import sys
import uuid

import pytest
from django.db import connection
from kombu import Connection, Producer

from domain_events.models import StoredEvent
from inbound.consumer import queues
from inbound.models import InboxMessage
from orders.models import Order
from orders.tests.factories import OrderFactory
from testsupport.network import TcpProxy
from testsupport.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

MAX_FAILURES = 3


@pytest.fixture
def inbound_queue(rabbitmq_url):
    """A queue of this test's own, with its dead-letter exchange and queue, deleted afterwards."""
    name = f"test.inbound.{uuid.uuid4()}"
    yield name
    queue, dead_letter, dead = queues(name, MAX_FAILURES)
    with Connection(rabbitmq_url, connect_timeout=2) as connection:
        channel = connection.channel()
        for entity in (queue, dead):
            entity.bind(channel).delete()
        dead_letter.bind(channel).delete()


@pytest.fixture
def consumer(processes, rabbitmq_url, inbound_queue):
    def start(name: str = "consumer", url: str | None = None, **env: str):
        process = processes.start(
            name,
            [sys.executable, "manage.py", "consume_inbound"],
            INTEGRATION_BROKER_URL=url or rabbitmq_url,
            INBOUND_BROKER_QUEUE=inbound_queue,
            INBOUND_BROKER_MAX_FAILURES=str(MAX_FAILURES),
            **env,
        )
        process.wait_for_output(f"consuming {inbound_queue}")
        return process

    return start


def publish(url: str, queue: str, body: str, *, message_id: str | None, tenant: str | None) -> None:
    with Connection(url, connect_timeout=2) as connection:
        headers = {"tenant": tenant} if tenant else {}
        Producer(connection.channel()).publish(
            body.encode(),
            routing_key=queue,
            message_id=message_id,
            headers=headers,
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=2,
        )


def depth(url: str, name: str) -> int:
    with Connection(url, connect_timeout=2) as connection:
        return connection.channel().queue_declare(name, passive=True).message_count


def shipped(order: Order) -> str:
    return json.dumps(
        {
            "type": "shipped",
            "order_id": str(order.id),
            "tracking_number": "1Z999",
            "occurred_at": "2026-11-26T10:41:07Z",
        }
    )


def test_a_consumer_killed_between_commit_and_ack_applies_the_redelivery_once(
    tenant, consumer, rabbitmq_url, inbound_queue
):
    order = OrderFactory(tenant=tenant, status=Order.Status.CONFIRMED)
    slow = consumer("slow", INBOUND_TEST_PAUSE_AFTER_COMMIT="60")
    publish(rabbitmq_url, inbound_queue, shipped(order), message_id="m-1", tenant=tenant.slug)
    slow.wait_for_output("inbound message m-1 committed: applied")
    slow.kill(signal.SIGKILL)
    order.refresh_from_db()
    assert order.status == "fulfilled"

    again = consumer("again")
    again.wait_for_output("seen before")
    wait_until(lambda: depth(rabbitmq_url, inbound_queue) == 0, what="the redelivery acknowledged")
    assert StoredEvent.objects.filter(aggregate_id=order.id).count() == 1
    assert InboxMessage.objects.filter(message_id="m-1").count() == 1


def test_the_broker_going_away_mid_stream_loses_no_notice_and_applies_none_twice(
    tenant, consumer, rabbitmq_url, inbound_queue, broker_proxy
):
    """The consumer reaches RabbitMQ through a proxy that the test cuts while notices are being
    applied (what the consumer sees of a broker restart: every connection reset, new ones refused),
    then restores: the consumer reconnects, and every notice is applied once, the one committed but
    not acknowledged when the connection died included."""
    orders = [OrderFactory(tenant=tenant, status=Order.Status.CONFIRMED) for _ in range(12)]
    # A pause between commit and acknowledgement: the cut is likely to fall inside it.
    running = consumer(url=broker_proxy.url, INBOUND_TEST_PAUSE_AFTER_COMMIT="0.3")
    for n, order in enumerate(orders):
        publish(rabbitmq_url, inbound_queue, shipped(order), message_id=f"stream-{n}", tenant=tenant.slug)
    wait_until(lambda: InboxMessage.objects.count() >= 4, timeout=60, what="the stream under way")
    broker_proxy.down()
    running.wait_for_output("reconnecting")
    cut_at = InboxMessage.objects.count()
    assert cut_at < len(orders), "the cut fell in the middle of the stream"
    broker_proxy.up()

    wait_until(
        lambda: Order.objects.filter(pk__in=[o.pk for o in orders], status="fulfilled").count() == len(orders),
        timeout=90,
        what="every order fulfilled after the broker came back",
    )
    wait_until(lambda: depth(rabbitmq_url, inbound_queue) == 0, timeout=30, what="every notice acknowledged")
    assert InboxMessage.objects.filter(status="applied").count() == len(orders)
    fulfilled = StoredEvent.objects.filter(type="order.fulfilled", aggregate_id__in=[o.pk for o in orders])
    assert sorted(fulfilled.values_list("aggregate_id", flat=True)) == sorted(o.pk for o in orders), (
        "one order.fulfilled per order: none lost, none applied twice"
    )
    assert running.popen.poll() is None, "the consumer rode out the outage"


def test_a_database_outage_keeps_the_notice_until_the_database_is_back(tenant, consumer, rabbitmq_url, inbound_queue):
    """PostgreSQL unreachable (what the consumer sees of a restart) is no fault of the message: the
    consumer keeps it and tries again until the database is back, however many tries that takes,
    instead of counting them as the message's failures and dead-lettering a good notice."""
    order = OrderFactory(tenant=tenant, status=Order.Status.CONFIRMED)
    db = connection.settings_dict
    proxy = TcpProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))
    try:
        running = consumer(DATABASE_URL=f"postgres://{db['USER']}@127.0.0.1:{proxy.port}/{db['NAME']}")
        proxy.down()
        publish(rabbitmq_url, inbound_queue, shipped(order), message_id="m-db", tenant=tenant.slug)
        wait_until(
            lambda: (
                running.output().count("database unavailable") > MAX_FAILURES
                or depth(rabbitmq_url, f"{inbound_queue}.dead-letter") > 0
            ),
            timeout=60,
            what="more tries than a message may fail, or the notice dead-lettered",
        )
        assert depth(rabbitmq_url, f"{inbound_queue}.dead-letter") == 0, "a good notice was dead-lettered"
        proxy.up()
        running.wait_for_output("inbound message m-db committed: applied")
    finally:
        proxy.down()
    order.refresh_from_db()
    assert order.status == "fulfilled"
    assert InboxMessage.objects.filter(message_id="m-db").count() == 1


def test_a_poison_message_ends_in_the_dead_letter_queue_and_others_still_apply(
    tenant, consumer, rabbitmq_url, inbound_queue
):
    order = OrderFactory(tenant=tenant, status=Order.Status.CONFIRMED)
    running = consumer()
    # No message id: it cannot be recorded once, so every try fails.
    publish(rabbitmq_url, inbound_queue, shipped(order), message_id=None, tenant=tenant.slug)
    wait_until(lambda: depth(rabbitmq_url, f"{inbound_queue}.dead-letter") == 1, what="the poison dead-lettered")
    assert running.output().count("returned to the queue") == MAX_FAILURES
    assert not InboxMessage.objects.exists()

    publish(rabbitmq_url, inbound_queue, shipped(order), message_id="m-2", tenant=tenant.slug)
    running.wait_for_output("inbound message m-2 committed: applied")
    order.refresh_from_db()
    assert order.status == "fulfilled"


def test_a_malformed_body_or_an_unknown_bookstore_is_parked_not_dead_lettered(
    tenant, consumer, rabbitmq_url, inbound_queue
):
    running = consumer()
    publish(rabbitmq_url, inbound_queue, "{not json", message_id="bad-body", tenant=tenant.slug)
    publish(rabbitmq_url, inbound_queue, '{"type": "shipped"}', message_id="no-store", tenant="nobody")
    running.wait_for_output("inbound message no-store committed: parked")
    parked = dict(InboxMessage.objects.values_list("message_id", "status"))
    assert parked == {"bad-body": "parked", "no-store": "parked"}
    assert InboxMessage.objects.get(message_id="bad-body").tenant_id == tenant.id
    assert InboxMessage.objects.get(message_id="no-store").reason == "an unknown bookstore"
    assert depth(rabbitmq_url, f"{inbound_queue}.dead-letter") == 0


def test_sigterm_stops_it_cleanly(consumer):
    running = consumer()
    running.popen.send_signal(signal.SIGTERM)
    assert running.popen.wait(15) == 0
