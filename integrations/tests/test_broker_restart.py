"""Across a real restart of RabbitMQ (`rabbitmqctl stop_app`, then `start_app`) while orders keep
coming: a consumer's durable queue gets every event exactly once, in position order."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import uuid

import pytest
from kombu import Connection, Queue

from core.testing import unavailable
from domain_events import tracking
from domain_events.head import head
from domain_events.models import Checkpoint, StoredEvent
from integrations.tests.test_broker_relay import an_order_history, publish
from integrations.transport import EXCHANGE
from testsupport.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def rabbitmqctl(rabbitmq_url) -> str:
    path = shutil.which("rabbitmqctl")
    if path is None:
        message = "rabbitmqctl is needed to restart the broker"
        unavailable(message)
    yield path
    # Whatever happened, the broker is back for the tests that follow.
    subprocess.run([path, "start_app"], capture_output=True, timeout=120)
    wait_until(lambda: _reachable(rabbitmq_url), timeout=60, what="RabbitMQ back")


def _reachable(url: str) -> bool:
    try:
        with Connection(url, connect_timeout=1) as connection:
            connection.ensure_connection(max_retries=1)
        return True
    except Exception:
        return False


@pytest.fixture
def durable_queue(rabbitmq_url):
    """A durable queue bound to `order.*`: it outlives the broker's restart (an exclusive one
    would go with the connection)."""
    queue = Queue(f"test.durable.{uuid.uuid4()}", exchange=EXCHANGE, routing_key="order.*", durable=True)
    with Connection(rabbitmq_url, connect_timeout=2) as connection:
        channel = connection.channel()
        EXCHANGE(channel).declare()
        queue(channel).declare()
    yield queue
    with Connection(rabbitmq_url, connect_timeout=2) as connection:
        connection.ensure_connection(max_retries=30)
        queue(connection.channel()).delete()


def drain(url: str, queue: Queue) -> list:
    with Connection(url, connect_timeout=2) as connection:
        bound = queue(connection.channel())
        messages = []
        while (message := bound.get(no_ack=True)) is not None:
            messages.append(message)
        return messages


def test_every_event_reaches_the_consumer_exactly_once_and_in_order_across_a_broker_restart(
    broker_reader, rabbitmq_url, rabbitmqctl, durable_queue, settings
):
    settings.INTEGRATION_BROKER_TIMEOUT = 2
    tenant_id = uuid.uuid4()
    restarted = threading.Event()
    outcome: dict[str, str] = {}

    def restart_the_broker() -> None:
        stop = subprocess.run([rabbitmqctl, "stop_app"], capture_output=True, text=True, timeout=120)
        time.sleep(1)
        start = subprocess.run([rabbitmqctl, "start_app"], capture_output=True, text=True, timeout=120)
        outcome["stop"], outcome["start"] = stop.stdout + stop.stderr, start.stdout + start.stderr
        restarted.set()

    restart = threading.Thread(target=restart_the_broker, daemon=True)
    failures = 0
    histories = 0
    # Orders keep coming before, during and after the restart; the relay publishes as they do.
    while histories < 20 or not restarted.is_set() or histories < 60:
        publish(*an_order_history(tenant_id))
        histories += 1
        if histories == 20:
            restart.start()
        tracking.run_due([broker_reader])
        failures += Checkpoint.objects.get(name=broker_reader).attempts > 0
        time.sleep(0.05)
    restart.join()
    assert "Stopping rabbit application" in outcome["stop"], outcome

    def published_everything() -> bool:
        tracking.run_due([broker_reader])
        return Checkpoint.objects.get(name=broker_reader).position == head()

    wait_until(
        published_everything,
        timeout=60,
        interval=0.5,
        what="the relay to publish everything after the restart",
    )
    assert failures, "the relay saw the broker go away"

    expected = list(
        StoredEvent.objects.filter(tenant_id=tenant_id, type__startswith="order.")
        .order_by("position")
        .values_list("event_id", flat=True)
    )
    assert len(expected) == 3 * histories
    received = []
    wait_until(
        lambda: received.extend(drain(rabbitmq_url, durable_queue)) or len(received) >= len(expected),
        timeout=20,
        what="every order event in the durable queue",
    )
    time.sleep(0.3)
    received += drain(rabbitmq_url, durable_queue)
    assert [m.properties["message_id"] for m in received] == [str(i) for i in expected], (
        "every event once, in position order"
    )
