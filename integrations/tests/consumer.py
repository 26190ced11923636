"""A consumer of the integration exchange for tests: a queue of its own bound by a pattern."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from kombu import Connection, Queue

from integrations.transport import EXCHANGE


@dataclass(frozen=True)
class Received:
    routing_key: str
    properties: dict[str, Any]
    body: bytes

    @property
    def message_id(self) -> str:
        return self.properties["message_id"]

    @property
    def cloudevent(self) -> dict[str, Any]:
        return json.loads(self.body)


class BrokerConsumer:
    """Binds an exclusive queue to `shelfwise.events` with `pattern` and reads what arrives there,
    keeping the messages of `tenant_ids` only (other runs may publish to the same broker)."""

    def __init__(self, url: str, pattern: str, *, tenant_ids: set[str]) -> None:
        self.tenant_ids = tenant_ids
        self.connection = Connection(url, connect_timeout=2)
        channel = self.connection.channel()
        EXCHANGE(channel).declare()
        self.queue = Queue(f"test.{uuid.uuid4()}", exchange=EXCHANGE, routing_key=pattern, exclusive=True)(channel)
        self.queue.declare()
        self.received: list[Received] = []

    def drain(self) -> list[Received]:
        """Everything that has arrived so far, in arrival order."""
        while (message := self.queue.get(no_ack=True)) is not None:
            received = Received(message.delivery_info["routing_key"], dict(message.properties), message.body)
            if received.cloudevent["tenantid"] in self.tenant_ids:
                self.received.append(received)
        return self.received

    def close(self) -> None:
        self.connection.release()
