"""The staff admin in a real browser (Chromium through Selenium) against a live server: a bookstore's
staff see their dashboard, rescue a stuck order and ship a confirmed one from its page; another
bookstore's staff see nothing of theirs."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from analytics.selectors import dashboard_get
from domain_events import tracking
from domain_events.bus import event_bus
from domain_events.models import Delivery, StoredEvent
from inventory.models import Product
from inventory.services import product_create
from orders.models import Order
from orders.services import order_place
from tenants.services import tenant_create, user_create
from testsupport.outbox import run_deliveries_now
from testsupport.processes import wait_until
from webhooks.tests.factories import WebhookEndpointFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CAPTURE = "payments.capture_payment_for_order"
CATALOG = (
    ("BOOK-DUNE", "Dune", "19.99", 60),
    ("BOOK-HOBBIT", "The Hobbit", "9.99", 80),
    ("BOOK-SICP", "Structure and Interpretation of Computer Programs", "59.97", 30),
    ("BOOK-DDD", "Domain-Driven Design", "54.99", 4),
)
# (days ago, sku, quantity): a month of sales for the chart.
HISTORY = (
    (27, "BOOK-DUNE", 2),
    (24, "BOOK-HOBBIT", 3),
    (21, "BOOK-SICP", 1),
    (17, "BOOK-DUNE", 1),
    (14, "BOOK-HOBBIT", 5),
    (11, "BOOK-SICP", 2),
    (8, "BOOK-DUNE", 3),
    (5, "BOOK-DDD", 1),
    (3, "BOOK-HOBBIT", 2),
    (1, "BOOK-SICP", 1),
)


def settle() -> None:
    """Run every open delivery and every position reader (read models, audit trail) here, as
    relays and workers would, until the saga is at rest."""
    for _ in range(12):
        if not Delivery.objects.filter(status__in=Delivery.OPEN).exists():
            tracking.run_due()
            return
        for subscription in event_bus.subscriptions():
            run_deliveries_now(subscription.name)
    raise AssertionError("the saga did not come to rest")


def bookstore(slug: str, name: str, *, zone: str = "Europe/Paris", currency: str = "EUR"):
    tenant = tenant_create(slug=slug, name=name, timezone=zone, currency=currency)
    staff, _ = user_create(tenant=tenant, username=f"{slug}-staff", password="paper-lantern-71", is_staff=True)
    customer, _ = user_create(
        tenant=tenant, username=f"{slug}-reader", password="quiet-reader-58", email=f"reader@{slug}.test"
    )
    for sku, title, price, stock in CATALOG:
        product_create(tenant=tenant, sku=sku, title=title, price=Decimal(price), stock=stock)
    return tenant, staff, customer


def place(tenant, customer, sku: str = "BOOK-DUNE", quantity: int = 1) -> Order:
    return order_place(
        tenant=tenant, customer=customer, items=[{"sku": sku, "quantity": quantity}], payment_token="tok_visa"
    )


def a_month_of_sales(tenant, customer) -> list[Order]:
    """The orders of HISTORY, each placed on its day (in the past), then confirmed."""
    orders = []
    for days_ago, sku, quantity in HISTORY:
        with time_machine.travel(timezone.now() - timedelta(days=days_ago, hours=2), tick=True):
            orders.append(place(tenant, customer, sku, quantity))
    settle()
    return orders


def order_id_on_page(admin) -> str:
    return admin.field("id")


def test_staff_see_the_dashboard_open_a_stuck_order_from_the_dead_letters_and_redrive_it(
    admin_browser, screenshots, processes, settings
):
    tenant, _staff, customer = bookstore("riverside", "Riverside Books")
    a_month_of_sales(tenant, customer)
    # The payment provider's answers to this order's first four capture requests are lost: the
    # capture is retried on its schedule, then dead-lettered, and the order stays placed.
    settings.PAYMENT_GATEWAY_LOST_RESPONSES = 4
    stuck = place(tenant, customer, "BOOK-DDD", 1)
    settle()
    settings.PAYMENT_GATEWAY_LOST_RESPONSES = 0
    dead = Delivery.objects.get(handler=CAPTURE, aggregate_id=stuck.id)
    assert dead.status == Delivery.Status.DEAD
    stuck.refresh_from_db()
    assert stuck.status == Order.Status.PLACED

    processes.relay()
    processes.worker()
    head = StoredEvent.objects.filter(tenant_id=tenant.id).order_by("-position").values_list("position", flat=True)[0]
    wait_until(lambda: dashboard_get(tenant=tenant).position >= head, what="the read models to catch up")

    admin = admin_browser
    admin.log_in("riverside-staff", "paper-lantern-71")
    assert admin.driver.current_url.endswith("/admin/")
    assert "Riverside Books" in admin.text("#content")
    # The chart is drawn: bars with a height, one per day that sold.
    drawn = admin.driver.execute_script(
        "return [...document.querySelectorAll('#revenue-chart rect.bar')]"
        ".filter(bar => bar.getBBox().height > 0).length"
    )
    assert drawn >= len({days for days, _, _ in HISTORY if days < 30}) - 1
    assert admin.text('[data-figure="orders_this_month"]') != ""
    assert admin.find_all("#top-products .product-bar rect")
    assert "BOOK-DDD" in admin.text("#low-stock")
    dead_count = admin.find("#handler-trouble li.alert").text
    assert "Dead letters" in dead_count
    assert dead_count.endswith("1")
    admin.screenshot(screenshots, "admin-dashboard")

    admin.submit("#dead-letters")
    assert "status__exact=dead" in admin.driver.current_url
    assert not admin.too_wide()
    rows = admin.find_all("#result_list tbody tr")
    assert len(rows) == 1
    assert CAPTURE in rows[0].text
    assert "was lost" in rows[0].text  # the first line of the last error
    admin.screenshot(screenshots, "admin-deliveries")

    admin.submit("#result_list tbody tr td.field-concerns a")
    assert order_id_on_page(admin) == str(stuck.id)
    assert admin.field("status").lower() == "placed"
    timeline = admin.text("#timeline")
    assert CAPTURE in timeline
    assert "the simulated provider's answer to request 4 was lost" in timeline
    assert "BOOK-DDD" in admin.text("#reservation")
    admin.screenshot(screenshots, "admin-order-stuck")
    assert not admin.too_wide()

    admin.submit("#timeline tr.delivery-dead input.redrive")
    assert "Re-queued the dead delivery" in admin.messages()
    admin.wait_for(lambda: admin.field("status").lower() == "confirmed", "the order to be confirmed", reload=True)
    assert "captured" in admin.text("#payment")
    assert not admin.find_all("#timeline tr.delivery-dead")
    admin.screenshot(screenshots, "admin-order")


STAFF_LISTS = (
    "/admin/orders/order/",
    "/admin/inventory/product/",
    "/admin/inventory/reservation/",
    "/admin/payments/payment/",
    "/admin/notifications/emailmessage/",
    "/admin/webhooks/webhookendpoint/",
    "/admin/webhooks/webhookdelivery/",
    "/admin/domain_events/delivery/",
    "/admin/domain_events/storedevent/",
    "/admin/audit/auditentry/",
)


def test_staff_fulfil_a_confirmed_order_from_its_page_and_cannot_cancel_it_then(admin_browser, screenshots):
    tenant, _staff, customer = bookstore("riverside", "Riverside Books")
    WebhookEndpointFactory(
        tenant=tenant, url="https://erp.riverside-books.example/hooks/shelfwise/orders", description="Distributor ERP"
    )
    order = place(tenant, customer, "BOOK-SICP", 2)
    settle()
    order.refresh_from_db()
    assert order.status == Order.Status.CONFIRMED

    admin = admin_browser
    admin.log_in("riverside-staff", "paper-lantern-71")
    admin.open("/admin/orders/order/")
    assert not admin.too_wide()
    # The list shows 8 characters of the id (all of it on hover) and finds the order by them.
    short = str(order.id)[:8]
    cell = admin.find("#result_list tbody tr th.field-order code")
    assert cell.text == short
    assert cell.get_attribute("title") == str(order.id)
    assert admin.text("#result_list tbody tr td.field-total") == "119.94 EUR"
    admin.find("#searchbar").send_keys(short)
    admin.submit("#changelist-search input[type=submit]")
    assert len(admin.find_all("#result_list tbody tr")) == 1
    admin.submit("#result_list tbody tr th.field-order a")

    admin.submit("#fulfil-order")
    admin.find("#id_tracking_number").send_keys("1Z999AA10123456784")
    admin.submit("#order-fulfil-form input[type=submit]")
    assert f"Order {short} fulfilled with tracking number 1Z999AA10123456784" in admin.messages()
    assert admin.field("status").lower() == "fulfilled"
    assert admin.field("tracking_number") == "1Z999AA10123456784"
    assert "order.fulfilled" in admin.text("#timeline")

    admin.submit("#cancel-order")
    assert f"Order {short} cannot be cancelled: it is fulfilled" in admin.messages()
    admin.submit("#fulfil-order")
    assert "only a confirmed order can be, and this one is fulfilled" in admin.messages()
    order.refresh_from_db()
    assert order.status == Order.Status.FULFILLED

    # Every list the staff work in fits the screen, rows and filters included.
    for url in STAFF_LISTS:
        admin.open(url)
        assert admin.find_all("#result_list tbody tr"), url
        assert not admin.too_wide(), url


def test_another_bookstores_staff_see_nothing_of_the_first_by_list_search_or_url(admin_browser):
    tenant, _, customer = bookstore("riverside", "Riverside Books")
    orders = a_month_of_sales(tenant, customer)
    bookstore("harbour", "Harbour Books", zone="America/New_York", currency="USD")
    theirs = orders[-1]
    product = Product.objects.get(tenant=tenant, sku="BOOK-DDD")
    delivery = Delivery.objects.filter(tenant_id=tenant.id).order_by("id").first()

    admin = admin_browser
    admin.log_in("harbour-staff", "paper-lantern-71")
    assert "Harbour Books" in admin.text("#content")
    assert "Riverside" not in admin.text("#content")
    assert admin.text('[data-figure="orders_this_month"]') == "0"
    assert not admin.find_all("#top-products .product-bar")

    admin.open("/admin/orders/order/")
    assert not admin.find_all("#result_list")
    for term in (str(theirs.id), str(theirs.id)[:8], "riverside-reader"):
        admin.open(f"/admin/orders/order/?q={term}")
        assert not admin.find_all("#result_list tbody tr"), term
    admin.open("/admin/inventory/product/")
    skus = [cell.text for cell in admin.find_all("#result_list tbody th.field-sku")]
    assert len(skus) == len(CATALOG)  # their own catalog, the same skus, not the other's rows
    assert f"/admin/inventory/product/{product.id}/" not in admin.driver.page_source
    # Their own catalog's stock events and deliveries only.
    riverside_deliveries = {str(pk) for pk in Delivery.objects.filter(tenant_id=tenant.id).values_list("pk", flat=True)}
    admin.open("/admin/domain_events/delivery/?status__exact=succeeded")
    shown = {cell.text for cell in admin.find_all("#result_list tbody th.field-id")}
    assert shown
    assert not shown & riverside_deliveries
    assert "order.placed" not in admin.text("#result_list")
    admin.open(f"/admin/domain_events/delivery/?q={theirs.id}")
    assert not admin.find_all("#result_list tbody tr")
    riverside_positions = {
        str(p) for p in StoredEvent.objects.filter(tenant_id=tenant.id).values_list("position", flat=True)
    }
    admin.open("/admin/domain_events/storedevent/")
    shown = {cell.text for cell in admin.find_all("#result_list tbody th.field-position")}
    assert shown
    assert not shown & riverside_positions
    admin.open(f"/admin/domain_events/storedevent/?q={theirs.id}")
    assert not admin.find_all("#result_list tbody tr")

    for url in (
        f"/admin/orders/order/{theirs.id}/change/",
        f"/admin/inventory/product/{product.id}/change/",
        f"/admin/domain_events/delivery/{delivery.id}/change/",
    ):
        admin.open(url)
        assert admin.driver.current_url.endswith("/admin/"), url  # Django's admin: "doesn't exist", home
        assert "doesn\N{RIGHT SINGLE QUOTATION MARK}t exist" in admin.messages()
    admin.open(f"/admin/orders/order/{theirs.id}/fulfil/")
    assert str(theirs.id) not in admin.driver.page_source
    assert "Not Found" in admin.driver.page_source or "not found" in admin.driver.page_source.lower()
