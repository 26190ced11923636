"""The distributor of a chaos run: the shipment notices it sends back about the bookstore's orders.

It takes the orders the load hands over (`Load.hand_over`): those it ships itself, once they are
confirmed, get "shipped" with its own tracking number and then "delivered" (now and then before
"shipped", as notices may arrive out of order) or "lost"; those the staff fulfilled get
"delivered" with the staff's tracking number. Each notice has a message id of its own and goes
one of the two ways a distributor sends them, at random:

- **webhook**: `POST /api/v1/inbound/chaos/distributor/`, signed with Standard Webhooks and the
  bookstore's distributor secret, through the gunicorn workers the run SIGKILLs; tried again
  (signed afresh, the same message id) on a connection error, a timeout or a 5xx until it is 202;
- **broker**: published, persistent and confirmed by RabbitMQ, to the queue that the run's
  `consume_inbound` reads (and the run SIGKILLs).

One notice in five is sent twice on purpose with the same message id, as a distributor whose
acknowledgement got lost would. Every notice is kept (`sent`) for the checks: each must be
recorded once in the inbox and applied once.
"""

from __future__ import annotations

import json
import queue
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import requests
from kombu import Connection, Producer
from standardwebhooks import Webhook

from chaos.load import PlacedOrder, call_with_retries

WAYS = ("webhook", "broker")
# One notice in TWICE is sent twice on purpose; a share of "delivered" goes before "shipped".
TWICE = 5
OUT_OF_ORDER = 0.2
# How long the distributor waits for an order it ships to be confirmed before it calls it stuck.
CONFIRM_PATIENCE = 300
# INBOUND_BROKER_MAX_FAILURES of the run's consumer (the queue is declared with it on both sides).
MAX_FAILURES = 5


class NoticeQueue:
    """The run's own queue of notices on RabbitMQ (with its dead-letter exchange and queue), as
    `consume_inbound` declares it; deleted at the end of the run. Declared once Django is set up
    (the consumer's module names the queues)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = f"chaos.inbound.{uuid.uuid4().hex[:12]}"
        self.declared = False

    def _entities(self) -> tuple:
        from inbound.consumer import queues

        return queues(self.name, MAX_FAILURES)

    def declare(self) -> None:
        """Declare it before anything is published (raises if RabbitMQ cannot be reached)."""
        queue, dead_letter, dead = self._entities()
        with Connection(self.url, connect_timeout=5) as connection:
            connection.ensure_connection(max_retries=1)
            channel = connection.channel()
            for entity in (dead_letter, dead, queue):
                entity.bind(channel).declare()
        self.declared = True

    def dead_lettered(self) -> int:
        """Messages the consumer gave up on (failed `MAX_FAILURES` times)."""
        with Connection(self.url, connect_timeout=5) as connection:
            return connection.channel().queue_declare(f"{self.name}.dead-letter", passive=True).message_count

    def delete(self) -> None:
        if not self.declared:
            return
        queue, dead_letter, dead = self._entities()
        with Connection(self.url, connect_timeout=5) as connection:
            channel = connection.channel()
            for entity in (queue, dead):
                entity.bind(channel).delete()
            dead_letter.bind(channel).delete()


@dataclass(frozen=True)
class SentNotice:
    """One notice as the distributor sent it: `copies` is 2 when it sent it twice on purpose
    (retries of one send after an error are not copies)."""

    message_id: str
    order_id: str
    kind: str
    way: str
    copies: int = 1


@dataclass
class Distributor:
    """Sends the notices of the orders handed to it, from `threads` threads, until `close()`."""

    base_url: str
    tenant_slug: str
    staff_token: str
    secret: str
    broker_url: str
    broker_queue: str
    seed: int
    threads: int = 4
    sent: list[SentNotice] = field(default_factory=list)
    retries: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        # (when to look at it next, when it was handed over, the order, its tracking number)
        self.orders: queue.Queue[tuple[float, float, PlacedOrder, str | None]] = queue.Queue()
        self.taken: set[str] = set()
        self.closing = threading.Event()
        self.workers: list[threading.Thread] = []

    def take(self, order: PlacedOrder, tracking: str | None) -> None:
        """Send the notices of `order` (once, however often it is handed over)."""
        with self.lock:
            if order.id in self.taken:
                return
            self.taken.add(order.id)
        now = time.monotonic()
        self.orders.put((now, now, order, tracking))

    def start(self) -> None:
        self.workers = [
            threading.Thread(target=self._work, args=(n,), daemon=True, name=f"distributor-{n}")
            for n in range(self.threads)
        ]
        for worker in self.workers:
            worker.start()

    def close(self) -> None:
        """No more orders will come: finish those taken, then stop."""
        self.closing.set()

    def wait(self) -> None:
        for worker in self.workers:
            worker.join()

    # --- one order ------------------------------------------------------------------------------

    def _work(self, number: int) -> None:
        rng = random.Random(self.seed * 7919 + number)
        session = requests.Session()
        try:
            with Connection(self.broker_url, connect_timeout=5, transport_options={"confirm_publish": True}) as broker:
                producer = Producer(broker.default_channel)
                # Confirmed by the broker before it returns; once more on a lost connection.
                publish = broker.ensure(producer, producer.publish, max_retries=5)
                while (taken := self._next()) is not None:
                    due, handed_over, order, tracking = taken
                    if (wait := due - time.monotonic()) > 0:
                        time.sleep(min(wait, 0.5))
                    try:
                        if tracking is None and not self._confirmed(order, handed_over, session):
                            self.orders.put((time.monotonic() + 0.5, handed_over, order, tracking))
                            continue
                        self._notices_of(order, tracking, rng, session, publish)
                    except Exception as exc:  # a notice that could not be sent is a finding of the checks
                        with self.lock:
                            self.errors.append(f"order {order.id}: {exc}")
        except Exception as exc:  # no broker: said by the checks, and the orders left show it too
            with self.lock:
                self.errors.append(f"distributor {number}: {exc!r}")

    def _next(self) -> tuple[float, float, PlacedOrder, str | None] | None:
        """The next order to send the notices of; None once closed and none is left."""
        while True:
            try:
                return self.orders.get(timeout=0.2)
            except queue.Empty:
                if self.closing.is_set():
                    return None

    def _notices_of(
        self,
        order: PlacedOrder,
        tracking: str | None,
        rng: random.Random,
        session: requests.Session,
        publish: Callable[..., object],
    ) -> None:
        if tracking is None:
            tracking = f"DST-{order.id[:8]}"
            kinds = ["shipped", "delivered" if order.intent == "ship_deliver" else "lost"]
            if kinds[1] == "delivered" and rng.random() < OUT_OF_ORDER:
                kinds.reverse()
        else:
            kinds = ["delivered"]
        for kind in kinds:
            time.sleep(rng.uniform(0.1, 1.0))
            with self.lock:
                notice = SentNotice(
                    message_id=f"chaos-{uuid.uuid4().hex}",
                    order_id=order.id,
                    kind=kind,
                    way=rng.choice(WAYS),
                    copies=2 if len(self.sent) % TWICE == 0 else 1,
                )
                self.sent.append(notice)
            body = json.dumps(
                {
                    "type": kind,
                    "order_id": order.id,
                    "tracking_number": tracking,
                    "occurred_at": datetime.now(tz=UTC).isoformat(),
                }
            ).encode()
            for _ in range(notice.copies):
                if notice.way == "webhook":
                    self._post(notice, body, session)
                else:
                    self._publish(notice, body, publish)

    def _confirmed(self, order: PlacedOrder, handed_over: float, session: requests.Session) -> bool:
        """Whether the order it is to ship is confirmed yet (raises if it never will be)."""
        response = call_with_retries(
            session,
            "GET",
            f"{self.base_url}/api/v1/orders/{order.id}/",
            ok={200},
            headers=lambda: {"Authorization": f"Token {self.staff_token}"},
            what=f"reading {order.id}",
            retried=self._retried,
        )
        status = response.json()["status"]
        if status not in ("placed", "confirmed"):
            raise RuntimeError(f"order {order.id} to ship is {status}")
        if status == "placed" and time.monotonic() - handed_over > CONFIRM_PATIENCE:
            raise RuntimeError(f"order {order.id} still placed after {CONFIRM_PATIENCE} s")
        return status == "confirmed"

    # --- the two ways ---------------------------------------------------------------------------

    def _post(self, notice: SentNotice, body: bytes, session: requests.Session) -> None:
        def signed() -> dict[str, str]:
            now = datetime.now(tz=UTC)
            signature = Webhook(self.secret).sign(msg_id=notice.message_id, timestamp=now, data=body.decode())
            return {
                "Content-Type": "application/json",
                "webhook-id": notice.message_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": signature,
            }

        call_with_retries(
            session,
            "POST",
            f"{self.base_url}/api/v1/inbound/{self.tenant_slug}/distributor/",
            ok={202},
            headers=signed,
            data=body,
            what=f"the {notice.kind} notice {notice.message_id}",
            retried=self._retried,
        )

    def _publish(self, notice: SentNotice, body: bytes, publish: Callable[..., object]) -> None:
        publish(
            body,
            routing_key=self.broker_queue,
            message_id=notice.message_id,
            headers={"tenant": self.tenant_slug},
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=2,
        )

    def _retried(self, kind: str) -> None:
        with self.lock:
            self.retries[kind] += 1
