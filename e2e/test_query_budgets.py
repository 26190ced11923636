"""Query budgets: the number of queries of the hot requests and of every handler of the saga.

Each figure is pinned: a change that adds a query to any of them fails here, and whoever makes it
decides whether it is worth it and updates the budget in the same commit.
"""

import base64
import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from domain_events.bus import event_bus
from domain_events.models import Delivery, QueueMark
from domain_events.tasks import run_delivery
from testsupport.outbox import run_deliveries_now
from webhooks.models import WebhookDelivery
from webhooks.tasks import send_webhook
from webhooks.tests.factories import endpoint_with_secret
from webhooks.tests.receiver import Answer, Receiver, running

pytestmark = [pytest.mark.django_db]

ORDERS = "/api/v1/orders/"
BOOKS = ("BOOK-A", "BOOK-B", "BOOK-C")

# Queries per request. Inside the test's transaction, BEGIN and COMMIT are SAVEPOINT and RELEASE.
POST_ORDER = 6  # token with user and tenant; catalog quote; savepoint; order with items; event + deliveries; release
GET_ORDER = 3  # token; the order; its items (prefetched: one query for all of them)
GET_DASHBOARD = 2  # token; the figures with their daily and top lists
# Queries per handler, for one order paid with tok_visa, one batch per handler as a relay or
# worker runs it: the batch's own (savepoint, claim and lock, record, release) included, and the
# one of `run_deliveries_now` that makes the deliveries due. A relay's batch needs no savepoint
# until a handler fails.
HANDLERS = {
    "inventory.reserve_stock_for_order": 10,
    "payments.register_payment_for_order": 6,
    # None open while the provider answers: the executor's lease check (a short transaction), the
    # claim of the capture's key (one statement), the record with its event (a short transaction),
    # the delivery's outcome (one statement).
    "payments.capture_payment_for_order": 15,
    "notifications.remember_order_contact": 6,
    # Its batches hold several deliveries (three here), with no savepoint of their own; a batch
    # fans its events out together, in one query (and one insert when an endpoint wants them).
    "webhooks.queue_webhook_deliveries": 12,
    # No savepoint of its own inside the executor's transaction.
    "orders.confirm_order": 9,
    "notifications.email_customer_about_order": 14,
}

# Queries per Celery task of one order, summed over its tasks, as a worker runs them after the
# publishers' fast path, with one webhook endpoint that wants every event. A task that calls out
# stamps its delivery as started and checks its lease in one statement, makes the call, and records
# a success in one statement. The queue marks (`probes.queue_reached`) are left out: they are
# throttled by time.
TASKS = {
    # The stamp (1), the claim of the capture's key (1), the record with its event (4), the fast
    # path of what that published (confirm_order and the fan-out of payment.captured in one batch,
    # 10; the fan-out of order.confirmed, 6: a fan-out reads the endpoints, the event's position
    # and what a delivery would wait for in one query), the outcome (1), and the look for more of
    # the handler's deliveries still queued (1).
    "payments.capture_payment_for_order": 24,
    # The stamp, the order's contact, the e-mail's log row (inserted unless there: 1), the
    # customer with the store's name (1), the row marked sent (1), the outcome, the look for more.
    "notifications.email_customer_about_order": 7,
    # Four webhooks (the order placed, its stock reserved, its payment captured, the order
    # confirmed), one after the other as each subject's order requires, in two tasks of two
    # batches. Per batch a claim (4: the endpoint locked and read with its signing secrets, the
    # lease under the in-flight limit) and a record (4: the outcomes with their attempts and the
    # next of each subject woken, the endpoint's health); per task the look-up of its delivery (1)
    # and a last claim that finds nothing (4).
    "webhooks.send_webhook": 42,
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


WORKER_QUEUES = ("webhooks", "payments", "email")


def next_message(redis_broker) -> tuple[str, list, dict] | None:
    """The oldest message of the first queue that has one: (task, args, kwargs)."""
    for queue in WORKER_QUEUES:
        raw = redis_broker.rpop(queue)  # kombu pushes left, workers pop right
        if raw is not None:
            message = json.loads(raw)
            args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
            return message["headers"]["task"], args, kwargs
    return None


@pytest.mark.django_db(transaction=True)  # the publishers' fast path runs on commit
def test_every_celery_task_of_the_saga_takes_a_fixed_number_of_queries(
    staff_api, customer, customer_api, tenant, settings, redis_broker, smtp_server
):
    """The worker's side of one order: each message run here as a worker runs it."""
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    customer.email = "carol@example.com"
    customer.save(update_fields=["email"])
    for sku in BOOKS:
        response = staff_api.post(
            "/api/v1/products/", {"sku": sku, "title": sku, "price": "9.50", "stock": 50}, format="json"
        )
        assert response.status_code == 201, response.content
    redis_broker.flushdb()
    # A worker's queues have their marks; the marks' writes are throttled by time and left out.
    for queue in WORKER_QUEUES:
        QueueMark.objects.get_or_create(queue=queue, defaults={"started_sent_at": timezone.now() - timedelta(days=1)})
    counts: dict[str, int] = {}
    with running(Receiver(default=Answer(204))) as receiver:
        endpoint_with_secret(tenant=tenant, url=receiver.url)
        order = place(customer_api)
        while (message := next_message(redis_broker)) is not None:
            task, args, kwargs = message
            with CaptureQueriesContext(connection) as queries:
                if task == run_delivery.name:
                    run_delivery.run(*args, **kwargs)
                    name = args[2]
                else:
                    send_webhook.run(*args, **kwargs)
                    name = task
            marks = QueueMark._meta.db_table
            counts[name] = counts.get(name, 0) + sum(marks not in q["sql"] for q in queries.captured_queries)
    assert customer_api.get(f"{ORDERS}{order['id']}/").json()["status"] == "confirmed"
    assert WebhookDelivery.objects.filter(status="succeeded").count() == len(receiver.received) == 4
    assert len(smtp_server.messages) == 1
    assert counts == TASKS
