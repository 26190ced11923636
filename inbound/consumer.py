"""The distributor's notices from RabbitMQ (`manage.py consume_inbound`), with kombu.

The queue (`INBOUND_BROKER_QUEUE`, on the broker of `INTEGRATION_BROKER_URL`) is a durable quorum
queue; messages are taken `INBOUND_BROKER_PREFETCH` at a time and acknowledged only after the
transaction that records and applies them has committed. A consumer that dies in between leaves
the message to be delivered again, and the inbox absorbs the copy: it is not applied twice.

A message whose handling fails is returned to the queue; the broker counts its deliveries
(`x-delivery-limit`) and after `INBOUND_BROKER_MAX_FAILURES` failures moves it to the dead-letter
exchange `<queue>.dead-letter`, whose queue of the same name keeps it for an operator. The
database out of reach (a restart, a failover) is no failure of the message: the consumer keeps
it, unacknowledged, and tries it again every few seconds until the database is back, so that an
outage never dead-letters good notices (returned at once, each would use up its failures in
milliseconds). A message
that is not a notice, or names no bookstore we know, does not fail: it is parked in the inbox with
its reason and acknowledged.

A message is the webhook's notice as its body (JSON); its message id is the AMQP `message_id`
property or else its `webhook-id` header, and its bookstore the `tenant` header (the slug).
"""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

from amqp.exceptions import AMQPError
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections, connection
from kombu import Connection, Consumer, Exchange, Queue
from kombu.exceptions import KombuError
from kombu.message import Message

from core.errors import ApplicationError
from inbound.models import InboxMessage
from inbound.services import message_id_check, notice_park, notice_parse, notice_receive
from tenants.models import Tenant

logger = logging.getLogger(__name__)

_BROKER_ERRORS = (OSError, AMQPError, KombuError)
# The database out of reach, not a fault of the message in hand.
_DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
DATABASE_RETRY_MAX = 5.0


def queues(name: str, max_failures: int) -> tuple[Queue, Exchange, Queue]:
    """The queue of notices, its dead-letter exchange and the queue that keeps what died."""
    dead_letter = Exchange(f"{name}.dead-letter", type="fanout", durable=True)
    dead = Queue(f"{name}.dead-letter", exchange=dead_letter, durable=True)
    queue = Queue(
        name,
        durable=True,
        queue_arguments={
            "x-queue-type": "quorum",
            # Returned more than this many times, a message is dead-lettered.
            "x-delivery-limit": max(0, max_failures - 1),
            "x-dead-letter-exchange": dead_letter.name,
        },
    )
    return queue, dead_letter, dead


class InboundConsumer:
    def __init__(self, *, url: str, queue: str, prefetch: int, max_failures: int) -> None:
        self.url = url
        self.queue, self.dead_letter, self.dead = queues(queue, max_failures)
        self.prefetch = prefetch
        self.stopping = False
        self.connection: Connection | None = None

    def stop(self, *_: Any) -> None:
        self.stopping = True

    def run(self) -> None:
        """Consume until `stop()` (SIGTERM, SIGINT); through a broker outage, reconnect."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        while not self.stopping:
            try:
                self._session()
            except _BROKER_ERRORS as exc:
                if self.stopping:
                    break
                logger.warning("inbound broker unavailable (%s: %s); reconnecting", type(exc).__name__, exc)
                time.sleep(1)

    def _session(self) -> None:
        with Connection(self.url, connect_timeout=5, heartbeat=10) as connection:
            connection.ensure_connection(max_retries=1)
            self.connection = connection
            channel = connection.channel()
            for entity in (self.dead_letter, self.dead, self.queue):
                entity.bind(channel).declare()
            consumer = Consumer(channel, queues=[self.queue], on_message=self.handle, no_ack=False)
            consumer.qos(prefetch_count=self.prefetch)
            with consumer:
                logger.info("consuming %s (prefetch %d)", self.queue.name, self.prefetch)
                while not self.stopping:
                    try:
                        connection.drain_events(timeout=1)
                    except TimeoutError:
                        connection.heartbeat_check()

    def handle(self, message: Message) -> None:
        """Record and apply one message, then acknowledge it; on failure return it to the queue.
        While the database is out of reach, keep the message and try it again."""
        delay = 0.5
        while True:
            try:
                close_old_connections()
                outcome = receive(message)
                break
            except _DATABASE_UNAVAILABLE as exc:
                if not self._database_down(message, exc, delay):
                    return  # stopping: unacknowledged, the broker gives it to the next consumer
                delay = min(delay * 2, DATABASE_RETRY_MAX)
            except Exception:
                logger.exception(
                    "inbound message %s failed; returned to the queue", message.properties.get("message_id")
                )
                close_old_connections()
                message.requeue()
                return
        logger.info("inbound message %s committed: %s", outcome.message_id, outcome.status)
        pause = getattr(settings, "INBOUND_PAUSE_AFTER_COMMIT", 0)
        if pause:  # tests only: a window between commit and acknowledgement to kill the process in
            time.sleep(pause)
        message.ack()

    def _database_down(self, message: Message, exc: DatabaseError, delay: float) -> bool:
        """Wait `delay` seconds for the database to come back (heartbeats still going to the broker);
        False if the consumer is stopping meanwhile."""
        logger.warning(
            "database unavailable (%s); inbound message %s kept, tried again in %.1f s",
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
            message.properties.get("message_id"),
            delay,
        )
        connection.close()
        deadline = time.monotonic() + delay
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
            if self.connection is not None:
                self.connection.heartbeat_check()
        return not self.stopping


def receive(message: Message) -> InboxMessage:
    """Record the message in the inbox and apply it, or park it; raises if it cannot be recorded."""
    headers = message.headers or {}
    message_id = message_id_check(message.properties.get("message_id") or headers.get("webhook-id"))
    body = message.body if isinstance(message.body, bytes) else str(message.body).encode()
    slug = headers.get("tenant")
    tenant = Tenant.objects.filter(slug=slug).first() if isinstance(slug, str) else None
    source = InboxMessage.Source.BROKER
    if tenant is None:
        reason = "no bookstore named in the `tenant` header" if not slug else "an unknown bookstore"
        return notice_park(tenant=None, message_id=message_id, source=source, reason=reason, body=body)[0]
    try:
        notice = notice_parse(body)
    except ApplicationError as exc:
        detail = "; ".join(f"{field}: {' '.join(map(str, errors))}" for field, errors in exc.extra.items())
        reason = f"{exc.message} {detail}".strip()
        return notice_park(tenant=tenant, message_id=message_id, source=source, reason=reason, body=body)[0]
    return notice_receive(tenant=tenant, message_id=message_id, source=source, notice=notice, body=body)[0]
