"""The order saga end to end: HTTP in, real inventory and payments, a real Celery worker and relay.

Orders, the catalog and payments are reached only through HTTP and the stored events; what the
other modules do is their own business, so these tests look at what a customer and the staff see.
"""

import threading
from collections import Counter

import pytest
from django.db import connections

from domain_events.models import Delivery, StoredEvent
from e2e.helpers import published
from testsupport.processes import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ORDERS = "/api/v1/orders/"
PRODUCTS = "/api/v1/products/"
VISA = "tok_visa"
DECLINED = "tok_chargeDeclined"
SAGA_TIMEOUT = 60


@pytest.fixture
def saga(processes):
    """A worker for the celery-mode handlers and a relay for retries and anything the fast path missed."""
    processes.worker(concurrency=4)
    processes.relay()
    return processes


def add_product(staff_api, sku: str, stock: int, price: str = "12.50") -> None:
    response = staff_api.post(
        PRODUCTS, {"sku": sku, "title": f"The book {sku}", "price": price, "stock": stock}, format="json"
    )
    assert response.status_code == 201, response.content


def available(api, sku: str) -> int:
    """What `GET products/` says is still available of `sku`."""
    response = api.get(PRODUCTS)
    assert response.status_code == 200, response.content
    [product] = [p for p in response.json()["results"] if p["sku"] == sku]
    return product["available"]


def place(api, sku: str, quantity: int = 1, payment_token: str = VISA) -> dict:
    response = api.post(
        ORDERS, {"items": [{"sku": sku, "quantity": quantity}], "payment_token": payment_token}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "placed"
    return response.json()


def order(api, order_id: str) -> dict:
    response = api.get(f"{ORDERS}{order_id}/")
    assert response.status_code == 200, response.content
    return response.json()


def settles_as(api, order_id: str, status: str) -> dict:
    """Wait until the order reaches `status`; fail early if it settles in another final state."""

    def reached() -> dict | None:
        current = order(api, order_id)
        if current["status"] == status:
            return current
        if current["status"] in ("cancelled", "fulfilled"):
            raise AssertionError(f"order {order_id} ended {current['status']} ({current['cancellation_reason']})")
        return None

    return wait_until(reached, timeout=SAGA_TIMEOUT, what=f"order {order_id} to be {status}")


def test_a_paid_order_is_confirmed(saga, staff_api, customer_api):
    add_product(staff_api, "EMMA-1", stock=5)
    placed = place(customer_api, "EMMA-1", quantity=2)

    confirmed = settles_as(customer_api, placed["id"], "confirmed")
    assert confirmed["cancellation_reason"] == ""
    assert confirmed["total_amount"] == "25.00"
    assert available(customer_api, "EMMA-1") == 3
    assert [e.type for e in StoredEvent.objects.filter(aggregate_id=placed["id"]).order_by("id")][-1] == (
        "order.confirmed"
    )
    assert published("payment.captured", placed["id"])


def test_a_declined_payment_cancels_the_order_and_gives_the_stock_back(saga, staff_api, customer_api):
    add_product(staff_api, "EMMA-1", stock=5)
    placed = place(customer_api, "EMMA-1", quantity=2, payment_token=DECLINED)

    cancelled = settles_as(customer_api, placed["id"], "cancelled")
    assert cancelled["cancellation_reason"] == "payment_declined"
    assert published("payment.failed", placed["id"])
    wait_until(lambda: available(customer_api, "EMMA-1") == 5, timeout=SAGA_TIMEOUT, what="the stock to come back")


def test_an_order_beyond_the_stock_is_cancelled_as_out_of_stock(saga, staff_api, customer_api):
    add_product(staff_api, "EMMA-1", stock=1)
    placed = place(customer_api, "EMMA-1", quantity=2)

    cancelled = settles_as(customer_api, placed["id"], "cancelled")
    assert cancelled["cancellation_reason"] == "out_of_stock"
    assert published("inventory.reservation_failed", placed["id"])
    assert not published("payment.captured", placed["id"])
    assert available(customer_api, "EMMA-1") == 1


def test_a_customer_cancels_a_confirmed_order_gets_the_stock_back_and_a_refund(saga, staff_api, customer_api):
    add_product(staff_api, "EMMA-1", stock=5)
    placed = place(customer_api, "EMMA-1", quantity=2)
    settles_as(customer_api, placed["id"], "confirmed")
    assert available(customer_api, "EMMA-1") == 3

    response = customer_api.post(f"{ORDERS}{placed['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["cancellation_reason"] == "customer_request"

    wait_until(lambda: available(customer_api, "EMMA-1") == 5, timeout=SAGA_TIMEOUT, what="the stock to come back")
    [refunded] = wait_until(lambda: published("payment.refunded", placed["id"]), timeout=SAGA_TIMEOUT, what="a refund")
    assert refunded.payload["amount"] == "25.00"
    # Cancelled it stays: a second cancel is a conflict, and so is fulfilling it.
    assert customer_api.post(f"{ORDERS}{placed['id']}/cancel").status_code == 409
    assert order(customer_api, placed["id"])["status"] == "cancelled"


def test_staff_cancel_and_the_refund_reads_as_theirs(saga, staff_api, customer_api, staff, customer):
    """Who caused each event follows causation through the real handlers: what the customer's order
    set off is the customer's; staff Alice cancelled, so the refund it set off is hers."""
    add_product(staff_api, "EMMA-1", stock=5)
    placed = place(customer_api, "EMMA-1", quantity=2)
    settles_as(customer_api, placed["id"], "confirmed")
    assert staff_api.post(f"{ORDERS}{placed['id']}/cancel").status_code == 200
    [refunded] = wait_until(lambda: published("payment.refunded", placed["id"]), timeout=SAGA_TIMEOUT, what="a refund")

    assert refunded.actor == f"staff:{staff.pk}"
    assert StoredEvent.objects.get(event_id=refunded.causation_id).type == "order.cancelled"
    actors = {e.type: e.actor for e in StoredEvent.objects.filter(aggregate_id=placed["id"])}
    assert actors == {
        "order.placed": f"customer:{customer.pk}",
        "inventory.reserved": f"customer:{customer.pk}",
        "payment.captured": f"customer:{customer.pk}",
        "order.confirmed": f"customer:{customer.pk}",
        "order.cancelled": f"staff:{staff.pk}",
        "payment.refunded": f"staff:{staff.pk}",
    }
    timeline = staff_api.get(f"{ORDERS}{placed['id']}/events/").json()["results"]
    assert [(e["type"], e["actor"]) for e in timeline if e["type"] == "payment.refunded"] == [
        ("payment.refunded", f"staff:{staff.pk}")
    ]


def test_staff_fulfill_a_confirmed_order(saga, staff_api, customer_api):
    add_product(staff_api, "EMMA-1", stock=5)
    placed = place(customer_api, "EMMA-1", quantity=2)
    settles_as(customer_api, placed["id"], "confirmed")

    response = staff_api.post(f"{ORDERS}{placed['id']}/fulfill", {"tracking_number": "1Z999AA1"}, format="json")
    assert response.status_code == 200

    fulfilled = order(customer_api, placed["id"])
    assert fulfilled["status"] == "fulfilled"
    assert fulfilled["tracking_number"] == "1Z999AA1"
    assert customer_api.post(f"{ORDERS}{placed['id']}/cancel").status_code == 409
    assert available(customer_api, "EMMA-1") == 3  # shipped, not back on the shelf


def test_fifty_concurrent_orders_for_ten_books_confirm_exactly_ten(saga, staff_api, customer, api_client_for):
    add_product(staff_api, "LAST-10", stock=10)
    responses: list[int] = []
    order_ids: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(50)

    def customer_orders() -> None:
        client = api_client_for(customer)
        try:
            start.wait(30)
            response = client.post(
                ORDERS, {"items": [{"sku": "LAST-10", "quantity": 1}], "payment_token": VISA}, format="json"
            )
            with lock:
                responses.append(response.status_code)
                if response.status_code == 201:
                    order_ids.append(response.json()["id"])
        finally:
            connections.close_all()

    threads = [threading.Thread(target=customer_orders) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads), "a request hung (deadlock?)"
    assert responses == [201] * 50

    customer_api = api_client_for(customer)

    def outcomes() -> Counter | None:
        orders = [order(customer_api, order_id) for order_id in order_ids]
        counts = Counter((o["status"], o["cancellation_reason"]) for o in orders)
        return counts if counts[("placed", "")] == 0 else None

    counts = wait_until(outcomes, timeout=120, interval=0.5, what="every order to settle")
    assert counts == {("confirmed", ""): 10, ("cancelled", "out_of_stock"): 40}
    assert available(customer_api, "LAST-10") == 0
    assert StoredEvent.objects.filter(type="payment.captured", aggregate_id__in=order_ids).count() == 10
    # Every reaction to these orders succeeded at its first attempt: no deadlock, no retry.
    deliveries = Delivery.objects.filter(aggregate_id__in=order_ids)
    wait_until(
        lambda: not deliveries.filter(status__in=Delivery.OPEN).exists(), timeout=60, what="every reaction to finish"
    )
    assert set(deliveries.values_list("status", "attempts").distinct()) == {(Delivery.Status.SUCCEEDED, 1)}
