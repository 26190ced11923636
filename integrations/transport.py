"""The AMQP side of the integration relay (kombu): one connection per process, publisher confirms.

Messages go to the durable topic exchange `shelfwise.events` with the event type as routing key
and the event id as message id, persistent, each confirmed by the broker before the next is sent:
what was confirmed is safe in every bound durable queue, so it is what the checkpoint may pass.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

from amqp.exceptions import AMQPError, MessageNacked
from django.conf import settings
from kombu import Connection, Exchange, Producer
from kombu.exceptions import KombuError

from domain_events.cloudevents import CONTENT_TYPE

logger = logging.getLogger(__name__)

EXCHANGE = Exchange("shelfwise.events", type="topic", durable=True)
PERSISTENT = 2  # AMQP delivery mode: written to disk in durable queues

# What a lost, refused, blocked or rejecting broker raises; anything else is a bug and stays loud.
_BROKER_ERRORS = (OSError, TimeoutError, AMQPError, KombuError, MessageNacked)


@dataclass(frozen=True)
class Message:
    routing_key: str
    message_id: str
    correlation_id: str
    body: str  # the CloudEvent, JSON
    position: int


class BrokerUnavailable(Exception):
    """The broker could not take (or confirm) a message; the first `confirmed` ones are safe."""

    def __init__(self, confirmed: int, cause: Exception) -> None:
        super().__init__(f"{confirmed} message(s) confirmed, then {type(cause).__name__}: {cause}")
        self.confirmed = confirmed


class Publisher:
    """A connection to one broker, opened on first use and dropped after any failure."""

    def __init__(self, url: str, *, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._connection: Connection | None = None
        self._producer: Producer | None = None

    def publish(self, messages: Sequence[Message]) -> None:
        """Publish in order; raises `BrokerUnavailable` at the first message not confirmed."""
        confirmed = 0
        try:
            producer = self._ready()
            for message in messages:
                producer.publish(
                    message.body,
                    routing_key=message.routing_key,
                    message_id=message.message_id,
                    correlation_id=message.correlation_id,
                    type=message.routing_key,
                    app_id="shelfwise",
                    delivery_mode=PERSISTENT,
                    content_type=CONTENT_TYPE,
                    content_encoding="utf-8",
                    retry=False,
                    timeout=self.timeout,
                    confirm_timeout=self.timeout,
                )
                confirmed += 1
        except _BROKER_ERRORS as exc:
            self.close()
            raise BrokerUnavailable(confirmed, exc) from exc

    def _ready(self) -> Producer:
        if self._producer is None:
            connection = Connection(self.url, connect_timeout=self.timeout, transport_options={"confirm_publish": True})
            try:
                connection.connect()
                channel = connection.channel()
                EXCHANGE(channel).declare()
            except BaseException:
                with contextlib.suppress(*_BROKER_ERRORS):
                    connection.release()
                raise
            self._connection = connection
            self._producer = Producer(channel, exchange=EXCHANGE)
            logger.info("integration broker connected: %s", connection.as_uri())
        return self._producer

    def close(self) -> None:
        connection, self._connection, self._producer = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(*_BROKER_ERRORS):
                connection.release()


_publishers: dict[tuple[int, str, float], Publisher] = {}


def publish(messages: Sequence[Message]) -> None:
    """Publish through this process's connection to `INTEGRATION_BROKER_URL` (opened as needed;
    a forked child opens its own)."""
    key = (os.getpid(), settings.INTEGRATION_BROKER_URL, settings.INTEGRATION_BROKER_TIMEOUT)
    publisher = _publishers.get(key)
    if publisher is None:
        publisher = _publishers[key] = Publisher(key[1], timeout=key[2])
    publisher.publish(messages)


def disconnect() -> None:
    """Close this process's broker connections (tests; a process about to exit)."""
    while _publishers:
        _publishers.popitem()[1].close()
