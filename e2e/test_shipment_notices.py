"""The distributor's shipment notices through the signed webhook, in one process: the inbox, the
orders' answer to `ApplyShipmentNotice`, the e-mail, the parking and what staff see."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.test import Client
from rest_framework.test import APIClient
from standardwebhooks import Webhook

from domain_events.events import OrderLine, OrderPlaced
from domain_events.models import StoredEvent
from inbound.models import DistributorSecret, InboxMessage, LostShipment
from notifications.services import order_contact_record
from orders.models import Order
from orders.tests.factories import OrderFactory
from tenants.tests.factories import UserFactory
from testsupport.outbox import run_deliveries_now

pytestmark = pytest.mark.django_db(transaction=True)

WHEN = "2026-11-26T10:41:07Z"


@pytest.fixture
def secret(staff_api) -> str:
    response = staff_api.post("/api/v1/inbound/distributor/secret")
    assert response.status_code == 201, response.content
    return response.json()["secret"]


@pytest.fixture
def confirmed(tenant) -> Order:
    customer = UserFactory(tenant=tenant, email="carol@example.com", first_name="Carol")
    order = OrderFactory(tenant=tenant, customer=customer, status=Order.Status.CONFIRMED)
    # What notifications learnt when the order was placed: whom to write to.
    line = OrderLine(sku="BOOK-1", title="Title of BOOK-1", quantity=2, unit_price=Decimal("12.50"))
    placed = OrderPlaced(
        tenant_id=tenant.id,
        order_id=order.id,
        customer_id=customer.pk,
        lines=(line,),
        total_amount=Decimal("25.00"),
        currency="USD",
        payment_token="tok_visa",
    )
    order_contact_record(event=placed)
    return order


def send(secret: str, slug: str, notice: dict | str, message_id: str | None = None):
    body = notice if isinstance(notice, str) else json.dumps(notice)
    message_id = message_id or f"msg_{uuid.uuid4().hex}"
    headers = {
        "HTTP_WEBHOOK_ID": message_id,
        "HTTP_WEBHOOK_TIMESTAMP": str(int(datetime.now(tz=UTC).timestamp())),
        "HTTP_WEBHOOK_SIGNATURE": Webhook(secret).sign(msg_id=message_id, timestamp=datetime.now(tz=UTC), data=body),
    }
    return APIClient().post(
        f"/api/v1/inbound/{slug}/distributor/", data=body, content_type="application/json", **headers
    )


def notice(kind: str, order_id, tracking: str = "1Z999") -> dict:
    return {"type": kind, "order_id": str(order_id), "tracking_number": tracking, "occurred_at": WHEN}


def types_of(order_id) -> list[str]:
    return list(StoredEvent.objects.filter(aggregate_id=order_id).order_by("id").values_list("type", flat=True))


def test_shipped_then_delivered_ends_delivered_and_emails_the_customer(tenant, secret, confirmed, smtp_server):
    response = send(secret, tenant.slug, notice("shipped", confirmed.id))
    assert response.status_code == 202, response.content
    assert response.json() == {"status": "accepted"}
    confirmed.refresh_from_db()
    assert (confirmed.status, confirmed.tracking_number) == ("fulfilled", "1Z999")

    assert send(secret, tenant.slug, notice("delivered", confirmed.id)).status_code == 202
    confirmed.refresh_from_db()
    assert confirmed.status == "delivered"
    assert confirmed.delivered_at == datetime(2026, 11, 26, 10, 41, 7, tzinfo=UTC)
    assert types_of(confirmed.id) == ["order.fulfilled", "order.delivered"]
    assert list(InboxMessage.objects.values_list("kind", "status")) == [
        ("delivered", "applied"),
        ("shipped", "applied"),
    ]

    run_deliveries_now("notifications.email_customer_about_order")
    subjects = sorted(m["Subject"] for m in smtp_server.messages)
    short = str(confirmed.id)[:8]
    assert subjects == [f"Your order {short} has been delivered", f"Your order {short} has shipped"]


def test_a_repeated_message_is_applied_once(tenant, secret, confirmed):
    for _ in range(3):
        assert send(secret, tenant.slug, notice("shipped", confirmed.id), message_id="msg-1").status_code == 202
    assert send(secret, tenant.slug, notice("delivered", confirmed.id), message_id="msg-2").status_code == 202
    assert send(secret, tenant.slug, notice("delivered", confirmed.id), message_id="msg-2").status_code == 202
    assert types_of(confirmed.id) == ["order.fulfilled", "order.delivered"]
    assert InboxMessage.objects.count() == 2


def test_delivered_before_shipped_applies_both_in_order(tenant, secret, confirmed):
    assert send(secret, tenant.slug, notice("delivered", confirmed.id)).status_code == 202
    confirmed.refresh_from_db()
    assert (confirmed.status, confirmed.tracking_number) == ("delivered", "1Z999")
    assert types_of(confirmed.id) == ["order.fulfilled", "order.delivered"]

    assert send(secret, tenant.slug, notice("shipped", confirmed.id)).status_code == 202
    confirmed.refresh_from_db()
    assert confirmed.status == "delivered"
    assert types_of(confirmed.id) == ["order.fulfilled", "order.delivered"]
    late = InboxMessage.objects.get(kind="shipped")
    assert (late.status, late.reason) == ("nothing_to_do", "the order is delivered already")


def test_lost_publishes_and_opens_a_task_on_the_dashboard(tenant, secret, confirmed, staff_admin):
    send(secret, tenant.slug, notice("shipped", confirmed.id))
    assert send(secret, tenant.slug, notice("lost", confirmed.id)).status_code == 202
    assert types_of(confirmed.id) == ["order.fulfilled", "order.shipment_lost"]
    lost = LostShipment.objects.get()
    assert (lost.order_id, lost.tracking_number, lost.resolved_at) == (confirmed.id, "1Z999", None)

    page = staff_admin.get("/admin/").content.decode()
    assert "Lost shipments to look at" in page
    assert str(confirmed.id)[:8] in page
    staff_admin.post("/admin/inbound/lostshipment/", {"action": "mark_looked_at", "_selected_action": [lost.pk]})
    lost.refresh_from_db()
    assert lost.resolved_by == "sam"
    assert str(confirmed.id)[:8] not in staff_admin.get("/admin/").content.decode()


def test_another_bookstores_order_is_parked_and_answered_as_any_other(tenant, other_tenant, secret, staff_admin):
    theirs = OrderFactory(tenant=other_tenant, status=Order.Status.CONFIRMED)
    to_theirs = send(secret, tenant.slug, notice("shipped", theirs.id))
    to_none = send(secret, tenant.slug, notice("shipped", uuid.uuid4()))
    assert (to_theirs.status_code, to_theirs.content) == (to_none.status_code, to_none.content)
    assert to_theirs.status_code == 202
    theirs.refresh_from_db()
    assert theirs.status == "confirmed"
    assert types_of(theirs.id) == []
    reasons = set(InboxMessage.objects.values_list("status", "reason"))
    assert reasons == {("parked", "no such order in this bookstore")}

    listing = staff_admin.get("/admin/inbound/inboxmessage/?status__exact=parked").content.decode()
    assert "no such order in this bookstore" in listing


def test_staff_see_only_their_bookstores_inbox(tenant, other_tenant, secret, confirmed):
    other_staff = UserFactory(tenant=other_tenant, username="olga", is_staff=True)
    other_api = APIClient()
    other_api.force_authenticate(other_staff)
    other_secret = other_api.post("/api/v1/inbound/distributor/secret").json()["secret"]
    send(other_secret, other_tenant.slug, notice("shipped", uuid.uuid4()), message_id="theirs")
    send(secret, tenant.slug, notice("shipped", confirmed.id), message_id="ours")
    browser = Client()
    browser.force_login(other_staff)
    listing = browser.get("/admin/inbound/inboxmessage/").content.decode()
    assert "theirs" in listing
    assert "ours" not in listing


def test_an_impossible_transition_is_parked(tenant, secret):
    placed = OrderFactory(tenant=tenant)
    assert send(secret, tenant.slug, notice("delivered", placed.id)).status_code == 202
    placed.refresh_from_db()
    assert placed.status == "placed"
    assert InboxMessage.objects.get().reason == "impossible: the order is placed"


def test_a_delivered_order_cannot_be_cancelled_and_is_listed_by_status(tenant, secret, confirmed, staff_api):
    send(secret, tenant.slug, notice("delivered", confirmed.id))
    response = staff_api.post(f"/api/v1/orders/{confirmed.id}/cancel")
    assert response.status_code == 409
    assert response.json()["detail"] == "A delivered order cannot be cancelled."
    listed = staff_api.get("/api/v1/orders/?status=delivered").json()["results"]
    assert [o["id"] for o in listed] == [str(confirmed.id)]
    assert staff_api.get(f"/api/v1/orders/{confirmed.id}/").json()["status"] == "delivered"


def test_the_secret_rotates_and_the_old_one_still_verifies(tenant, secret, confirmed, staff_api):
    new = staff_api.post("/api/v1/inbound/distributor/secret").json()["secret"]
    assert new != secret
    assert new.startswith("whsec_")
    assert send(secret, tenant.slug, notice("shipped", confirmed.id)).status_code == 202
    assert send(new, tenant.slug, notice("delivered", confirmed.id)).status_code == 202
    stored = DistributorSecret.objects.values_list("secret", flat=True)
    assert set(stored) == {secret, new}
