"""The order's page: what the other modules know of the order, and Fulfil and Cancel as buttons that
call the services and refuse, saying why, when the order's state does not allow them."""

from datetime import UTC, datetime

import pytest
from django.test import Client
from django.urls import reverse

from domain_events.models import StoredEvent
from orders.models import Order
from orders.tests.factories import OrderFactory
from tenants.tests.factories import TenantFactory, UserFactory

pytestmark = pytest.mark.django_db


def page_of(order) -> str:
    return reverse("admin:orders_order_change", args=[order.pk])


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_the_page_shows_payment_reservation_emails_webhooks_timeline_and_both_buttons(staff_admin, tenant):
    order = OrderFactory(tenant=tenant, status=Order.Status.CONFIRMED)
    page = staff_admin.get(page_of(order)).content.decode()
    positions = [page.index(f'id="{panel}"') for panel in ("payment", "reservation", "emails", "webhook-deliveries")]
    assert positions == sorted(positions)
    assert page.index('id="webhook-deliveries"') < page.index('id="timeline"')
    assert ">25.00 USD<" in page  # the total
    assert reverse("admin:orders_order_fulfil", args=[order.pk]) in page
    assert reverse("admin:orders_order_cancel", args=[order.pk]) in page


def test_fulfil_asks_for_the_tracking_number_then_fulfils(staff_admin, tenant):
    order = OrderFactory(tenant=tenant, status=Order.Status.CONFIRMED)
    url = reverse("admin:orders_order_fulfil", args=[order.pk])
    assert 'name="tracking_number"' in staff_admin.get(url).content.decode()
    assert "This field is required" in staff_admin.post(url, {"tracking_number": "  "}).content.decode()

    response = staff_admin.post(url, {"tracking_number": "1Z999"}, follow=True)

    assert "fulfilled with tracking number 1Z999" in " ".join(messages_of(response))
    order.refresh_from_db()
    assert (order.status, order.tracking_number) == (Order.Status.FULFILLED, "1Z999")
    assert StoredEvent.objects.filter(type="order.fulfilled", aggregate_id=order.id).exists()


@pytest.mark.parametrize("status", [Order.Status.PLACED, Order.Status.FULFILLED])
def test_fulfil_refuses_an_order_that_is_not_confirmed_and_says_why(staff_admin, tenant, status):
    order = OrderFactory(tenant=tenant, status=status)
    response = staff_admin.post(
        reverse("admin:orders_order_fulfil", args=[order.pk]), {"tracking_number": "1Z"}, follow=True
    )
    assert response.redirect_chain[-1][0] == page_of(order)
    assert f"only a confirmed order can be, and this one is {status}" in " ".join(messages_of(response))
    order.refresh_from_db()
    assert order.status == status


def test_cancel_asks_first_then_cancels_at_the_customers_request(staff_admin, tenant):
    order = OrderFactory(tenant=tenant, status=Order.Status.PLACED)
    url = reverse("admin:orders_order_cancel", args=[order.pk])
    assert "Cancel the order" in staff_admin.get(url).content.decode()
    order.refresh_from_db()
    assert order.status == Order.Status.PLACED

    response = staff_admin.post(url, follow=True)

    assert "cancelled" in " ".join(messages_of(response))
    order.refresh_from_db()
    assert (order.status, order.cancellation_reason) == (Order.Status.CANCELLED, "customer_request")


def test_cancel_refuses_a_fulfilled_order_and_says_why(staff_admin, tenant):
    order = OrderFactory(tenant=tenant, status=Order.Status.FULFILLED)
    response = staff_admin.post(reverse("admin:orders_order_cancel", args=[order.pk]), follow=True)
    assert "cannot be cancelled: it is fulfilled" in " ".join(messages_of(response))
    order.refresh_from_db()
    assert order.status == Order.Status.FULFILLED


def test_another_bookstores_order_cannot_be_fulfilled_or_cancelled(staff_admin, other_tenant):
    theirs = OrderFactory(tenant=other_tenant, status=Order.Status.CONFIRMED)
    for name in ("admin:orders_order_fulfil", "admin:orders_order_cancel"):
        assert staff_admin.post(reverse(name, args=[theirs.pk]), {"tracking_number": "1Z"}).status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == Order.Status.CONFIRMED


def test_the_list_finds_an_order_by_the_8_characters_it_shows(staff_admin, tenant):
    order, other = OrderFactory(tenant=tenant), OrderFactory(tenant=tenant)
    page = staff_admin.get("/admin/orders/order/", {"q": str(order.pk)[:8]}).content.decode()
    assert page_of(order) in page
    assert page_of(other) not in page


def test_the_list_shows_times_in_the_bookstores_timezone():
    tenant = TenantFactory(timezone="Asia/Tokyo")
    staff = UserFactory(tenant=tenant, is_staff=True)
    order = OrderFactory(tenant=tenant)
    Order.objects.filter(pk=order.pk).update(created_at=datetime(2026, 5, 1, 20, 0, tzinfo=UTC))
    client = Client()
    client.force_login(staff)
    page = client.get("/admin/orders/order/").content.decode()
    assert ">2026-05-02 05:00<" in page  # 20:00 UTC is 05:00 the next day in Tokyo
    assert "JST" in page
