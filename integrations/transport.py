"""The AMQP side of the integration relay (kombu): one connection per process, publisher confirms.

Messages go to the durable topic exchange `shelfwise.events` with the event type as routing key
and the event id as message id, persistent, each confirmed by the broker before the next is sent:
what was confirmed is safe in every bound durable queue, so it is what the checkpoint may pass.

A confirmation can be lost while its message was routed (the connection or the broker went down
in between), and a relay can die after publishing but before its checkpoint commits; sent again,
that message would reach consumers twice. So every message is also routed, in the same step, to
the ledger: a durable queue that keeps only the last message (`x-max-length` 1, drop-head),
reached through the sender-selected `BCC` header, which consumers never see. A new connection
first reads the ledger: the position and event id of the last message the broker took, which the
integration relay skips if its checkpoint is behind it (`ledger_mark`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

from amqp.exceptions import AMQPError, MessageNacked
from django.conf import settings
from kombu import Connection, Exchange, Producer, Queue
from kombu.exceptions import KombuError

from domain_events.cloudevents import CONTENT_TYPE

logger = logging.getLogger(__name__)

EXCHANGE = Exchange("shelfwise.events", type="topic", durable=True)
PERSISTENT = 2  # AMQP delivery mode: written to disk in durable queues
POSITION_HEADER = "shelfwise-position"

# What a lost, refused, blocked or rejecting broker raises; anything else is a bug and stays loud.
_BROKER_ERRORS = (OSError, TimeoutError, AMQPError, KombuError, MessageNacked)


@dataclass(frozen=True)
class Message:
    routing_key: str
    message_id: str
    correlation_id: str
    body: str  # the CloudEvent, JSON
    position: int


@dataclass(frozen=True)
class LedgerMark:
    """The last message the broker routed, as its ledger tells at the start of a connection."""

    position: int
    message_id: str


class BrokerUnavailable(Exception):
    """The broker could not take (or confirm) a message; the first `confirmed` ones are safe."""

    def __init__(self, confirmed: int, cause: Exception) -> None:
        super().__init__(f"{confirmed} message(s) confirmed, then {type(cause).__name__}: {cause}")
        self.confirmed = confirmed


class Publisher:
    """A connection to one broker, opened on first use and dropped after any failure."""

    def __init__(self, url: str, *, timeout: float, ledger: str) -> None:
        self.url = url
        self.timeout = timeout
        self.ledger = ledger
        self._connection: Connection | None = None
        self._producer: Producer | None = None
        self._mark: LedgerMark | None = None

    def ledger_mark(self) -> LedgerMark | None:
        """What the ledger held when this connection opened (connecting if needed), told once per
        connection: after it, the checkpoint follows what this connection had confirmed."""
        try:
            self._ready()
        except _BROKER_ERRORS as exc:
            self.drop()
            raise BrokerUnavailable(0, exc) from exc
        mark, self._mark = self._mark, None
        return mark

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
                    headers={"BCC": [self.ledger], POSITION_HEADER: message.position},
                    retry=False,
                    timeout=self.timeout,
                    confirm_timeout=self.timeout,
                )
                confirmed += 1
        except _BROKER_ERRORS as exc:
            self.drop()
            raise BrokerUnavailable(confirmed, exc) from exc

    def _ready(self) -> Producer:
        if self._producer is None:
            connection = Connection(self.url, connect_timeout=self.timeout, transport_options={"confirm_publish": True})
            try:
                connection.connect()
                channel = connection.channel()
                EXCHANGE(channel).declare()
                mark = self._read_ledger(channel)
            except BaseException:
                with contextlib.suppress(*_BROKER_ERRORS):
                    connection.collect()  # no closing handshake with a broker that failed us
                raise
            self._connection = connection
            self._producer = Producer(channel, exchange=EXCHANGE)
            self._mark = mark
            logger.info("integration broker connected: %s (ledger at %s)", connection.as_uri(), mark)
        return self._producer

    def _read_ledger(self, channel) -> LedgerMark | None:
        queue = ledger_queue(self.ledger)(channel)
        queue.declare()
        message = queue.get(no_ack=False)
        if message is None:
            return None
        try:
            return LedgerMark(int(message.headers[POSITION_HEADER]), message.properties["message_id"])
        except (KeyError, TypeError, ValueError):
            logger.warning("the ledger %s holds a message that is not a ShelfWise event; ignored", self.ledger)
            return None
        finally:
            message.requeue()

    def close(self) -> None:
        """Close the connection with AMQP's closing handshake."""
        connection, self._connection, self._producer = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(*_BROKER_ERRORS):
                connection.release()

    def drop(self) -> None:
        """Close the socket after a failure, without the closing handshake: a broker that did not
        answer in time would leave the handshake waiting for RabbitMQ's closing timeout (30 s) before
        the next try could start. What the broker routed stays routed; the ledger tells the next
        connection."""
        connection, self._connection, self._producer = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(*_BROKER_ERRORS):
                connection.collect()


def ledger_queue(name: str) -> Queue:
    """The ledger: bound by its own name, which no event type matches, so only `BCC` reaches it."""
    return Queue(
        name,
        exchange=EXCHANGE,
        routing_key=name,
        durable=True,
        queue_arguments={"x-max-length": 1, "x-overflow": "drop-head"},
    )


_publishers: dict[tuple[int, str, float, str], Publisher] = {}


def _publisher() -> Publisher:
    """This process's connection to `INTEGRATION_BROKER_URL` (a forked child opens its own)."""
    key = (
        os.getpid(),
        settings.INTEGRATION_BROKER_URL,
        settings.INTEGRATION_BROKER_TIMEOUT,
        settings.INTEGRATION_BROKER_LEDGER,
    )
    publisher = _publishers.get(key)
    if publisher is None:
        publisher = _publishers[key] = Publisher(key[1], timeout=key[2], ledger=key[3])
    return publisher


def publish(messages: Sequence[Message]) -> None:
    """Publish in order, each confirmed before the next (`BrokerUnavailable` at the first that is not)."""
    _publisher().publish(messages)


def ledger_mark() -> LedgerMark | None:
    """The last message the broker had routed when this process's connection opened, once per
    connection; None if the ledger was empty or this connection already told it."""
    return _publisher().ledger_mark()


def disconnect() -> None:
    """Close this process's broker connections (tests; a process about to exit)."""
    while _publishers:
        _publishers.popitem()[1].close()
