"""The customers and the staff of a chaos run: orders over HTTP from concurrent clients.

Every POST is retried, with the same `Idempotency-Key` for orders, on a connection error, a
timeout, a 5xx, a 409 (the first try is still in flight) or a 429, as a careful client would.
The mix: cards that pay (`tok_visa`), cards that are declined (`tok_chargeDeclined`), orders for
more copies than there are (out of stock, with a line that could be reserved: all or nothing),
orders the customer cancels a moment later, orders the staff fulfil once confirmed, and orders
whose fate the distributor's shipment notices decide (`chaos.distributor`): shipped and delivered,
shipped and lost in transit, or fulfilled by the staff and then delivered.
"""

from __future__ import annotations

import queue
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

# What each order is meant to become, and its share of the mix.
INTENTS = {
    "pay": 0.30,
    "fulfil": 0.20,
    "ship_deliver": 0.08,
    "ship_lose": 0.03,
    "fulfil_deliver": 0.04,
    "decline": 0.12,
    "out_of_stock": 0.10,
    "cancel": 0.13,
}
EXPECTED = {
    "pay": ("confirmed", ""),
    "fulfil": ("fulfilled", ""),
    # The distributor ships it ("shipped"), then it is delivered, or lost in transit (the order
    # stays fulfilled; staff get a task).
    "ship_deliver": ("delivered", ""),
    "ship_lose": ("fulfilled", ""),
    # The staff fulfil it, then the distributor says it was delivered.
    "fulfil_deliver": ("delivered", ""),
    "decline": ("cancelled", "payment_declined"),
    "out_of_stock": ("cancelled", "out_of_stock"),
    "cancel": ("cancelled", "customer_request"),
}
# Orders the distributor ships itself, once confirmed; and those it delivers after the staff fulfilled them.
SHIPPED_BY_DISTRIBUTOR = ("ship_deliver", "ship_lose")
FULFILLED_BY_STAFF = ("fulfil", "fulfil_deliver")
RETRYABLE = {409, 429, 500, 502, 503, 504}
SCARCE_SKU = "CHAOS-SCARCE"
SCARCE_STOCK = 3
# How long the staff wait for an order to be confirmed before they call it stuck.
FULFIL_PATIENCE = 300


def call_with_retries(
    session: requests.Session,
    method: str,
    url: str,
    *,
    ok: set[int],
    headers: Callable[[], dict[str, str]],
    what: str,
    retried: Callable[[str], None],
    json: object = None,
    data: bytes | None = None,
) -> requests.Response:
    """One request, tried again on a connection error, a timeout or a `RETRYABLE` answer (each
    try counted by `retried` with its kind) for up to 300 s; `headers` is asked afresh for each try
    (a signature carries its moment)."""
    delay = 0.1
    deadline = time.monotonic() + 300
    while True:
        try:
            response = session.request(method, url, json=json, data=data, timeout=(3, 20), headers=headers())
        except requests.RequestException as exc:
            kind = type(exc).__name__
        else:
            if response.status_code in ok:
                return response
            if response.status_code not in RETRYABLE:
                raise RuntimeError(f"{what}: {response.status_code} {response.text[:300]}")
            kind = str(response.status_code)
        retried(kind)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: still failing after 300 s ({kind})")
        # A server that says when to come back (503 or 429 with Retry-After) is taken at its word.
        told = response.headers.get("Retry-After", "") if kind.isdigit() else ""
        time.sleep(min(float(told), 30.0) if told.isdigit() else delay)
        delay = min(delay * 2, 2.0)


@dataclass
class PlacedOrder:
    id: str
    intent: str
    customer: str


@dataclass
class Load:
    """Places `count` orders from `clients` threads; the staff fulfil from `staff_threads`."""

    base_url: str
    customer_tokens: list[str]
    staff_token: str
    skus: list[str]
    count: int
    clients: int
    seed: int
    placed: list[PlacedOrder] = field(default_factory=list)
    retries: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Given each order whose notices the distributor sends, with the tracking number it shipped
    # with (None: the distributor ships it itself once it is confirmed).
    hand_over: Callable[[PlacedOrder, str | None], None] = lambda order, tracking: None

    def __post_init__(self) -> None:
        self.next_index = 0
        self.to_fulfil: queue.Queue[tuple[float, PlacedOrder]] = queue.Queue()
        self.placing_done = threading.Event()
        self.threads: list[threading.Thread] = []

    # --- HTTP with retries ----------------------------------------------------------------

    def _call(
        self,
        session: requests.Session,
        method: str,
        path: str,
        token: str,
        *,
        ok: set[int],
        json: object = None,
        headers: dict[str, str] | None = None,
        what: str,
    ) -> requests.Response:
        return call_with_retries(
            session,
            method,
            self.base_url + path,
            ok=ok,
            json=json,
            headers=lambda: {"Authorization": f"Token {token}", **(headers or {})},
            what=what,
            retried=self._retried,
        )

    def _retried(self, kind: str) -> None:
        with self.lock:
            self.retries[kind] += 1

    # --- customers --------------------------------------------------------------------------

    def _take(self) -> int | None:
        with self.lock:
            if self.next_index >= self.count:
                return None
            self.next_index += 1
            return self.next_index - 1

    def _order_body(self, rng: random.Random, intent: str) -> dict:
        skus = rng.sample(self.skus, rng.randint(1, min(3, len(self.skus))))
        items = [{"sku": sku, "quantity": rng.randint(1, 3)} for sku in skus]
        if intent == "out_of_stock":
            items = [items[0], {"sku": SCARCE_SKU, "quantity": SCARCE_STOCK + 1}]
        token = "tok_chargeDeclined" if intent == "decline" else "tok_visa"
        return {"items": items, "payment_token": token}

    def _customer(self, number: int) -> None:
        rng = random.Random(self.seed * 1000 + number)
        session = requests.Session()
        intents, weights = list(INTENTS), list(INTENTS.values())
        while (index := self._take()) is not None:
            try:
                intent = rng.choices(intents, weights)[0]
                token = self.customer_tokens[index % len(self.customer_tokens)]
                key = str(uuid.uuid4())
                response = self._call(
                    session,
                    "POST",
                    "/api/v1/orders/",
                    token,
                    ok={201},
                    json=self._order_body(rng, intent),
                    headers={"Idempotency-Key": key},
                    what=f"placing order {index}",
                )
                order = PlacedOrder(id=response.json()["id"], intent=intent, customer=token)
                with self.lock:
                    self.placed.append(order)
                if intent == "cancel":
                    time.sleep(rng.uniform(0, 0.5))
                    self._cancel(session, order)
                elif intent in FULFILLED_BY_STAFF:
                    self.to_fulfil.put((time.monotonic() + 0.5, order))
                elif intent in SHIPPED_BY_DISTRIBUTOR:
                    self.hand_over(order, None)
            except Exception as exc:  # a broken client is a finding, reported with the checks
                with self.lock:
                    self.errors.append(str(exc))

    def _cancel(self, session: requests.Session, order: PlacedOrder) -> None:
        path = f"/api/v1/orders/{order.id}/cancel"
        response = self._call(session, "POST", path, order.customer, ok={200, 409}, what=f"cancelling {order.id}")
        if response.status_code == 409:
            # After a retry: the first try cancelled it and its answer was lost.
            status = self._status(session, order, order.customer)
            if status != "cancelled":
                raise RuntimeError(f"cancelling {order.id}: 409 and the order is {status}")

    def _status(self, session: requests.Session, order: PlacedOrder, token: str) -> str:
        response = self._call(
            session, "GET", f"/api/v1/orders/{order.id}/", token, ok={200}, what=f"reading {order.id}"
        )
        return response.json()["status"]

    # --- staff ------------------------------------------------------------------------------

    def _staff(self) -> None:
        session = requests.Session()
        while True:
            try:
                due, order = self.to_fulfil.get(timeout=0.2)
            except queue.Empty:
                if self.placing_done.is_set() and self.to_fulfil.empty():
                    return
                continue
            if (wait := due - time.monotonic()) > 0:
                time.sleep(min(wait, 0.5))
            try:
                status = self._status(session, order, self.staff_token)
                if status == "placed":
                    if time.monotonic() - due > FULFIL_PATIENCE:
                        raise RuntimeError(f"fulfilling {order.id}: still placed after {FULFIL_PATIENCE} s")
                    self.to_fulfil.put((due, order))
                    time.sleep(0.5)
                    continue
                tracking = f"TRK-{order.id[:8]}"
                if status == "confirmed":
                    self._call(
                        session,
                        "POST",
                        f"/api/v1/orders/{order.id}/fulfill",
                        self.staff_token,
                        ok={200, 409},
                        json={"tracking_number": tracking},
                        what=f"fulfilling {order.id}",
                    )
                    status = self._status(session, order, self.staff_token)
                    if status == "confirmed":
                        self.to_fulfil.put((due, order))
                        continue
                # Fulfilled now or by an earlier try whose answer was lost: the distributor may deliver it.
                if status == "fulfilled" and order.intent == "fulfil_deliver":
                    self.hand_over(order, tracking)
            except Exception as exc:
                with self.lock:
                    self.errors.append(str(exc))

    # --- running ----------------------------------------------------------------------------

    def start(self) -> None:
        customers = [threading.Thread(target=self._customer, args=(n,), daemon=True) for n in range(self.clients)]
        staff = [threading.Thread(target=self._staff, daemon=True) for _ in range(2)]
        self.customers = customers
        self.threads = customers + staff
        for thread in self.threads:
            thread.start()

    def progress(self) -> float:
        with self.lock:
            return len(self.placed) / self.count

    def placing_finished(self) -> bool:
        return not any(t.is_alive() for t in self.customers)

    def wait(self) -> None:
        for thread in self.customers:
            thread.join()
        self.placing_done.set()
        for thread in self.threads:
            thread.join()
