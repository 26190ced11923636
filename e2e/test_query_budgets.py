"""Query budgets: the number of queries of the hot requests and of every handler of the saga.

Each figure is pinned: a change that adds a query to any of them fails here, and whoever makes it
decides whether it is worth it and updates the budget in the same commit.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from domain_events.bus import event_bus
from domain_events.models import Delivery
from testsupport.outbox import run_deliveries_now

pytestmark = [pytest.mark.django_db]

ORDERS = "/api/v1/orders/"
BOOKS = ("BOOK-A", "BOOK-B", "BOOK-C")

# Queries per request. Inside the test's transaction, BEGIN and COMMIT are SAVEPOINT and RELEASE.
POST_ORDER = 6  # token with user and tenant; catalog quote; savepoint; order with items; event + deliveries; release
GET_ORDER = 3  # token; the order; its items (prefetched: one query for all of them)
GET_DASHBOARD = 2  # token; the figures with their daily and top lists
# Queries per handler, for one order paid with tok_visa, one batch per handler as a relay or
# worker runs it: the batch's own (savepoint, claim and lock, record, release) included, and the
# one of `run_deliveries_now` that makes the deliveries due. A relay's batch of one delivery needs
# no savepoint; in a batch of several, each delivery has one (SAVEPOINT and RELEASE).
HANDLERS = {
    "inventory.reserve_stock_for_order": 15,
    "payments.register_payment_for_order": 9,
    # Four short transactions, so that none is open while the provider answers: the executor's
    # lease check, the claim of the capture's key, the record with its event, the delivery's outcome.
    "payments.capture_payment_for_order": 22,
    "notifications.remember_order_contact": 9,
    # Its batches hold several deliveries (three here): each runs in a savepoint of its own (2 queries).
    "webhooks.queue_webhook_deliveries": 20,
    "orders.confirm_order": 11,
    "notifications.email_customer_about_order": 20,
}


@pytest.fixture
def shop(staff_api, settings):
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
    for sku in BOOKS:
        response = staff_api.post(
            "/api/v1/products/", {"sku": sku, "title": sku, "price": "9.50", "stock": 50}, format="json"
        )
        assert response.status_code == 201, response.content


def place(customer_api) -> dict:
    body = {"items": [{"sku": sku, "quantity": 1} for sku in BOOKS], "payment_token": "tok_visa"}
    response = customer_api.post(ORDERS, body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def settle_counting() -> dict[str, int]:
    """Run the saga to rest, one handler's batch at a time; the queries of each batch that ran."""
    counts: dict[str, int] = {}
    for _ in range(10):
        if not Delivery.objects.filter(status__in=Delivery.OPEN).exists():
            return counts
        for subscription in event_bus.subscriptions():
            if not Delivery.objects.filter(handler=subscription.name, status__in=Delivery.OPEN).exists():
                continue
            with CaptureQueriesContext(connection) as queries:
                report = run_deliveries_now(subscription.name)
            assert report.succeeded == report.handled > 0, subscription.name
            counts[subscription.name] = counts.get(subscription.name, 0) + len(queries)
    raise AssertionError("the saga did not come to rest")


def test_placing_an_order_takes_a_fixed_number_of_queries(shop, customer_api):
    place(customer_api)  # the first request of a process fills caches
    with CaptureQueriesContext(connection) as queries:
        place(customer_api)
    assert len(queries) == POST_ORDER, [q["sql"][:120] for q in queries.captured_queries]


def test_every_handler_of_the_saga_takes_a_fixed_number_of_queries(shop, customer_api):
    settle_counting()  # the stock adjustments of the catalog set-up
    order = place(customer_api)
    counts = settle_counting()
    assert customer_api.get(f"{ORDERS}{order['id']}/").json()["status"] == "confirmed"
    assert counts == HANDLERS


def test_reading_an_order_and_the_dashboard_take_a_fixed_number_of_queries(shop, customer_api, staff_api):
    order = place(customer_api)
    settle_counting()
    with CaptureQueriesContext(connection) as queries:
        assert customer_api.get(f"{ORDERS}{order['id']}/").status_code == 200
    assert len(queries) == GET_ORDER, [q["sql"][:120] for q in queries.captured_queries]
    with CaptureQueriesContext(connection) as queries:
        assert staff_api.get("/api/v1/dashboard/").status_code == 200
    assert len(queries) == GET_DASHBOARD, [q["sql"][:120] for q in queries.captured_queries]
