"""The integration relay against the real RabbitMQ: every contract event as a CloudEvent that fits
its published schema, in position order, routed by type, persistent, confirmed; a broker outage
only delays."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from django.db import transaction
from jsonschema import Draft202012Validator

from domain_events import reader_lag, tracking
from domain_events.bus import event_bus
from domain_events.cloudevents import CLOUDEVENT_SCHEMA
from domain_events.events import (
    DomainEvent,
    OrderConfirmed,
    OrderFulfilled,
    OrderLine,
    OrderPlaced,
    PaymentCaptured,
    StockAdjusted,
)
from domain_events.head import head
from domain_events.models import Checkpoint, StoredEvent
from domain_events.schemas import data_schema
from domain_events.tests.probe.events import ProbeHappened
from integrations import transport
from integrations.handlers import already_at_the_broker, message_for
from integrations.tests.consumer import BrokerConsumer
from testsupport.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

LINES = (OrderLine(sku="978-1", title="Emma", quantity=1, unit_price=Decimal("12.50")),)


@pytest.fixture
def tenant_id() -> uuid.UUID:
    return uuid.uuid4()


@pytest.fixture
def consumer_of(rabbitmq_url, tenant_id):
    consumers: list[BrokerConsumer] = []

    def bind(pattern: str) -> BrokerConsumer:
        consumers.append(BrokerConsumer(rabbitmq_url, pattern, tenant_ids={str(tenant_id)}))
        return consumers[-1]

    yield bind
    for consumer in consumers:
        consumer.close()


def publish(*events: DomainEvent) -> list[DomainEvent]:
    with transaction.atomic():
        stored = [event_bus.publish(e) for e in events]
    return stored


def an_order_history(tenant_id: uuid.UUID) -> list[DomainEvent]:
    order_id, payment_id = uuid.uuid4(), uuid.uuid4()
    common = {"tenant_id": tenant_id, "order_id": order_id}
    return [
        OrderPlaced(
            **common,
            customer_id=uuid.uuid4(),
            lines=LINES,
            total_amount=Decimal("12.50"),
            currency="USD",
            payment_token="tok_visa",
        ),
        PaymentCaptured(
            **common, payment_id=payment_id, amount=Decimal("12.50"), currency="USD", provider_reference="ch_1"
        ),
        OrderConfirmed(**common, total_amount=Decimal("12.50"), currency="USD"),
        OrderFulfilled(**common, tracking_number="TRK-1", shipped_at=datetime.now(tz=UTC), lines=LINES),
    ]


def positions_of(event_ids: list[str]) -> list[int]:
    by_id = dict(StoredEvent.objects.filter(event_id__in=event_ids).values_list("event_id", "position"))
    return [by_id[uuid.UUID(i)] for i in event_ids]


def test_every_event_goes_out_once_in_position_order_as_a_persistent_cloudevent_routed_by_its_type(
    broker_reader, consumer_of, tenant_id
):
    orders = consumer_of("order.*")
    everything = consumer_of("#")
    first, second = an_order_history(tenant_id), an_order_history(tenant_id)
    restock = StockAdjusted(
        tenant_id=tenant_id, product_id=uuid.uuid4(), sku="978-1", quantity_change=5, on_hand=5, reason="restock"
    )
    stored = publish(first[0], second[0], restock, *first[1:], *second[1:])
    publish(ProbeHappened(tenant_id=tenant_id, probe_id=uuid.uuid4(), n=1))  # not a contract event

    assert tracking.catch_up(broker_reader) == len(stored)

    wait_until(lambda: len(everything.drain()) >= len(stored), timeout=10, what="every event at the broker")
    assert [m.message_id for m in everything.drain()] == [str(e.event_id) for e in stored]
    order_events = [e for e in stored if e.type.startswith("order.")]
    wait_until(lambda: len(orders.drain()) >= len(order_events), timeout=10, what="the order events")
    received = orders.drain()
    assert [m.message_id for m in received] == [str(e.event_id) for e in order_events]
    assert [m.routing_key for m in received] == [e.type for e in order_events]
    assert positions_of([m.message_id for m in received]) == sorted(positions_of([m.message_id for m in received]))

    placed = received[0]
    assert placed.properties["delivery_mode"] == 2, "persistent"
    assert placed.properties["content_type"] == "application/cloudevents+json"
    assert placed.properties["correlation_id"] == stored[0].correlation_id
    parsed = JSONFormat().read(CloudEvent, placed.body)
    assert parsed.get_id() == str(first[0].event_id)
    assert parsed.get_type() == "order.placed"
    assert parsed.get_source() == f"/tenants/{tenant_id}"
    assert parsed.get_subject() == str(first[0].order_id)
    assert parsed.get_extension("sequence") == f"{positions_of([placed.message_id])[0]:020d}"
    assert parsed.get_extension("actor") == stored[0].actor
    assert "payment_token" not in parsed.get_data(), "private fields never leave the process"
    for message in everything.drain():
        cloudevent = message.cloudevent
        Draft202012Validator(CLOUDEVENT_SCHEMA).validate(cloudevent)
        Draft202012Validator(data_schema(cloudevent["type"], cloudevent["eventversion"])).validate(cloudevent["data"])

    assert Checkpoint.objects.get(name=broker_reader).position == head()
    assert tracking.catch_up(broker_reader) == 0
    assert len(everything.drain()) == len(stored), "nothing is published twice"


def test_a_broker_outage_only_delays_the_events_and_the_checkpoint_waits_for_the_broker(
    broker_reader, broker_proxy, consumer_of, tenant_id
):
    orders = consumer_of("order.*")
    before = Checkpoint.objects.get(name=broker_reader).position
    broker_proxy.down()
    stored = publish(*an_order_history(tenant_id))

    tracking.run_due([broker_reader])
    checkpoint = Checkpoint.objects.get(name=broker_reader)
    assert checkpoint.position == before, "nothing was confirmed, so the checkpoint stays"
    assert checkpoint.attempts == 1
    assert "BrokerUnavailable" in checkpoint.last_error
    assert checkpoint.retry_at is not None
    assert orders.drain() == []

    broker_proxy.up()
    wait_until(lambda: tracking.run_due([broker_reader]), timeout=10, what="the retry after the outage")
    order_events = [e for e in stored if e.type.startswith("order.")]
    wait_until(lambda: len(orders.drain()) >= len(order_events), timeout=10, what="the delayed events")
    assert [m.message_id for m in orders.drain()] == [str(e.event_id) for e in order_events]
    assert Checkpoint.objects.get(name=broker_reader).attempts == 0


def test_a_connection_lost_in_the_middle_of_a_batch_sends_nothing_twice(
    broker_reader, broker_proxy, consumer_of, tenant_id
):
    everything = consumer_of("#")
    stored = []
    for _ in range(15):
        stored += publish(*an_order_history(tenant_id))  # 60 events, batches of 100
    start = Checkpoint.objects.get(name=broker_reader).position
    # Enough for the handshake and a few dozen messages, not for all 60.
    broker_proxy.cut_after(25_000)

    tracking.run_due([broker_reader])
    checkpoint = Checkpoint.objects.get(name=broker_reader)
    assert start < checkpoint.position < head(), "the confirmed part of the batch is behind the checkpoint"
    assert "PartlyApplied" in checkpoint.last_error

    broker_proxy.up()
    wait_until(lambda: tracking.run_due([broker_reader]), timeout=10, what="the rest of the batch")
    assert Checkpoint.objects.get(name=broker_reader).position == head()

    expected = [str(e.event_id) for e in stored]
    wait_until(lambda: len(everything.drain()) >= len(expected), timeout=10, what="all 60")
    time.sleep(0.3)  # a repeat would be here by now
    assert [m.message_id for m in everything.drain()] == expected, "in position order, each once"


def test_messages_the_broker_took_without_confirming_are_not_sent_again(
    broker_reader, broker_proxy, consumer_of, tenant_id, settings
):
    """The confirmations are lost, not the messages: the broker routed them, the relay never heard
    so. The ledger tells the next connection, and the retry sends only what the broker lacks."""
    settings.INTEGRATION_BROKER_TIMEOUT = 1
    everything = consumer_of("#")
    first = publish(*an_order_history(tenant_id))
    assert tracking.catch_up(broker_reader) == len(first)
    start = Checkpoint.objects.get(name=broker_reader).position
    second = publish(*an_order_history(tenant_id))
    broker_proxy.swallow_replies()

    began = time.monotonic()
    tracking.run_due([broker_reader])
    assert time.monotonic() - began < 10, "the failed connection is dropped, not closed with a handshake"
    checkpoint = Checkpoint.objects.get(name=broker_reader)
    assert checkpoint.position == start, "no confirmation came back, so the checkpoint stays"
    assert "BrokerUnavailable" in checkpoint.last_error
    wait_until(lambda: len(everything.drain()) > len(first), timeout=10, what="the unconfirmed message at the broker")

    broker_proxy.down()
    broker_proxy.up()
    wait_until(lambda: tracking.run_due([broker_reader]), timeout=10, what="the retry")
    assert Checkpoint.objects.get(name=broker_reader).position == head()
    expected = [str(e.event_id) for e in first + second]
    wait_until(lambda: len(everything.drain()) >= len(expected), timeout=10, what="every event")
    time.sleep(0.3)  # a repeat would be here by now
    assert [m.message_id for m in everything.drain()] == expected


def test_a_ledger_mark_of_another_deployment_is_ignored(broker_reader, tenant_id):
    stored = publish(*an_order_history(tenant_id))
    messages = [message_for(e, p) for e, p in zip(stored, positions_of([str(e.event_id) for e in stored]), strict=True)]
    ours = transport.LedgerMark(messages[1].position, messages[1].message_id)
    theirs = transport.LedgerMark(messages[1].position, str(uuid.uuid4()))
    assert already_at_the_broker(messages, ours) == 2
    assert already_at_the_broker(messages, theirs) == 0, "same position, an event id that is not ours"
    assert already_at_the_broker(messages, None) == 0
    assert already_at_the_broker(messages, transport.LedgerMark(messages[0].position - 1, "x")) == 0


def test_without_a_broker_url_no_process_publishes_anywhere(settings):
    assert settings.INTEGRATION_BROKER_URL == ""
    assert tracking.subscriptions.tracker("integrations.broker") is None
    assert "integrations.broker" not in {lag.name for lag in reader_lag.lags()}
