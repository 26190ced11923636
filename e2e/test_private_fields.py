"""Private event fields (the payment token) are masked wherever a person reads them: the admin's
pages, the timeline, the events feed, the error texts of deliveries and dead letters, and the logs."""

import io
import logging

import pytest
from django.conf import settings

from audit.models import AuditEntry
from core.fields import decrypt
from domain_events import tracking
from domain_events.bus import event_bus
from domain_events.events import OrderPlaced
from domain_events.models import Delivery, StoredEvent
from domain_events.subscriptions import subscriptions
from testsupport.outbox import run_deliveries_now

pytestmark = [pytest.mark.django_db]


def test_the_payment_token_is_masked_on_every_admin_page_that_shows_the_order_placed_event(
    staff_api, customer_api, staff_admin
):
    assert (
        staff_api.post(
            "/api/v1/products/", {"sku": "BOOK-1", "title": "Emma", "price": "9.50", "stock": 5}, format="json"
        ).status_code
        == 201
    )
    placed = customer_api.post(
        "/api/v1/orders/", {"items": [{"sku": "BOOK-1", "quantity": 1}], "payment_token": "tok_visa"}, format="json"
    )
    assert placed.status_code == 201
    event = StoredEvent.objects.get(type="order.placed")
    assert event.payload["payment_token"] != "tok_visa", "stored encrypted"
    assert decrypt(event.payload["payment_token"]) == "tok_visa", "as it came: the payment handler needs it"
    delivery = Delivery.objects.filter(stored_event=event).first()
    pages = [
        f"/admin/domain_events/storedevent/{event.pk}/change/",
        f"/admin/domain_events/delivery/{delivery.pk}/change/",
        f"/admin/orders/order/{placed.json()['id']}/change/",
        "/admin/domain_events/storedevent/",
        "/admin/domain_events/delivery/",
    ]
    for page in pages:
        response = staff_admin.get(page)
        assert response.status_code == 200, page
        assert b"tok_visa" not in response.content, page
    assert "••••visa" in staff_admin.get(pages[0]).content.decode()
    timeline = staff_api.get(f"/api/v1/orders/{placed.json()['id']}/events/")
    assert b"tok_visa" not in timeline.content


# --- error texts and logs -------------------------------------------------------------------------

LEAKY = "test.charge_card_and_complain"
# Not shaped like `tok_…`, so only masking by value (the event's private fields) can hide it.
TOKEN = "pm_card_SECRET123"
SHOWN = "••••T123"


@pytest.fixture
def leaky_handler():
    """A handler that puts the customer's payment token in its exception message, as a careless
    provider client might."""

    def charge_card_and_complain(event: OrderPlaced) -> None:
        raise RuntimeError(f"the provider refused card {event.payment_token} for order {event.order_id}")

    event_bus.subscribe(OrderPlaced, charge_card_and_complain, mode="on_commit", name=LEAKY)
    yield LEAKY
    subscriptions.remove(LEAKY)


@pytest.fixture
def log_lines():
    """What the root logger writes through the project's formatter (`LOGGING`), as JSON and as
    console lines."""
    formatter = settings.LOGGING["formatters"]["shelfwise"]["()"]
    streams = {"json": io.StringIO(), "console": io.StringIO()}
    handlers = []
    for log_format, stream in streams.items():
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter(log_format))
        handler.setLevel(logging.INFO)
        logging.getLogger().addHandler(handler)
        handlers.append(handler)
    yield streams
    for handler in handlers:
        logging.getLogger().removeHandler(handler)


@pytest.mark.django_db(transaction=True)
def test_a_payment_token_in_a_handlers_exception_is_masked_in_the_dead_letter_every_page_and_the_logs(
    leaky_handler, log_lines, redis_broker, staff_api, customer_api, staff_admin
):
    redis_broker.flushdb()
    created = staff_api.post(
        "/api/v1/products/", {"sku": "BOOK-1", "title": "Emma", "price": "9.50", "stock": 5}, format="json"
    )
    assert created.status_code == 201
    placed = customer_api.post(
        "/api/v1/orders/", {"items": [{"sku": "BOOK-1", "quantity": 1}], "payment_token": TOKEN}, format="json"
    )
    assert placed.status_code == 201
    order_id = placed.json()["id"]
    for _ in range(4):  # the first attempt ran right after the commit; three retries, then dead
        run_deliveries_now(LEAKY)
    tracking.run_due()  # the audit trail and the read models, which show the event too
    delivery = Delivery.objects.get(handler=LEAKY)
    assert delivery.status == Delivery.Status.DEAD
    assert "the provider refused card" in delivery.last_error
    assert TOKEN not in delivery.last_error
    assert SHOWN in delivery.last_error

    for log_format, stream in log_lines.items():
        text = stream.getvalue()
        assert f"handler {LEAKY} failed" in text, log_format
        assert "the provider refused card" in text, f"{log_format}: the exception is logged, masked"
        assert TOKEN not in text, f"the payment token in a {log_format} log line"

    event = StoredEvent.objects.get(type="order.placed")
    timeline = staff_api.get(f"/api/v1/orders/{order_id}/events/")
    assert timeline.status_code == 200
    assert SHOWN in timeline.content.decode(), "the timeline shows the error, masked"
    feed = staff_api.get("/api/v1/events/?after=0")
    assert feed.status_code == 200
    assert TOKEN not in timeline.content.decode() + feed.content.decode()

    audit = AuditEntry.objects.filter(event_id=event.event_id).first()
    assert audit is not None
    pages = {
        "/admin/domain_events/delivery/?status__exact=dead": True,  # the dead letters
        f"/admin/domain_events/delivery/{delivery.pk}/change/": True,
        f"/admin/domain_events/storedevent/{event.pk}/change/": True,
        f"/admin/orders/order/{order_id}/change/": True,  # the order's timeline
        f"/admin/audit/auditentry/{audit.pk}/change/": False,
        "/admin/audit/auditentry/": False,
        "/admin/payments/payment/": False,
    }
    for page, shows_the_error in pages.items():
        response = staff_admin.get(page)
        assert response.status_code == 200, page
        content = response.content.decode()
        assert TOKEN not in content, page
        if shows_the_error:
            assert SHOWN in content, page
