"""Every page of the admin runs a fixed number of queries, however many rows it shows: each list,
each change page and the dashboard, for a bookstore's staff and for an operator, before and after
the shop has three times as many orders (each new order with more lines, events and deliveries).

The numbers are pinned: a page that starts to query per row (or per line, per event, per delivery)
fails here with the queries it ran."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from domain_events import subscribers, tracking
from domain_events.bus import event_bus
from domain_events.models import Delivery
from inventory.services import product_create
from orders.models import Order
from orders.services import order_fulfill, order_place
from tenants.tests.factories import UserFactory
from testsupport.outbox import run_deliveries_now
from webhooks.tests.factories import WebhookEndpointFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Queries per page: (staff, operator); None where the page is the operators' only. Every request
# reads the session, the user and the user's permissions (2); a staff member's also their bookstore
# (for its timezone), and Django reads the model's content type. An operator's list that names
# tenants reads the tenants' names once.
LISTS: dict[str, tuple[int | None, int]] = {
    "orders.order": (7, 5),
    "inventory.product": (8, 6),
    "inventory.reservation": (8, 6),
    "payments.payment": (7, 4),
    "payments.simulatedcharge": (None, 5),
    "notifications.emailmessage": (8, 6),
    "webhooks.webhookendpoint": (8, 5),
    "webhooks.webhookdelivery": (7, 6),
    "domain_events.storedevent": (7, 7),
    "domain_events.delivery": (8, 8),
    "domain_events.subscriber": (None, 6),
    # one lag per position reader: as many rows as the code subscribes readers, not per event
    "domain_events.checkpoint": (None, 11),
    "audit.auditentry": (7, 6),
    "tenants.tenant": (None, 5),
    "tenants.user": (None, 6),
}
PAGES: dict[str, tuple[int | None, int]] = {
    # the order, its items, payment, reservation and its lines' products, e-mails, webhook
    # deliveries, the distributor's notices, and the timeline's events and their deliveries
    "orders.order": (19, 17),
    "inventory.product": (7, 5),
    "inventory.reservation": (8, 6),
    "payments.payment": (7, 4),
    "payments.simulatedcharge": (None, 4),
    "notifications.emailmessage": (7, 4),
    "webhooks.webhookendpoint": (7, 5),
    "webhooks.webhookdelivery": (9, 6),
    "domain_events.storedevent": (8, 5),
    "domain_events.delivery": (8, 5),
    "domain_events.subscriber": (None, 4),
    "domain_events.checkpoint": (None, 4),
    "audit.auditentry": (7, 4),
    "tenants.tenant": (None, 4),
    "tenants.user": (None, 9),
}
# The staff member's home; an operator's home with ?tenant=<slug>: the figures (2), the last
# 30 days (1), low stock (1), handler trouble (2: its counts, the oldest open writing transaction),
# webhook trouble (2), the distributor (2: lost shipments to look at, parked notices).
DASHBOARD = (15, 14)


def settle() -> None:
    for _ in range(12):
        if not Delivery.objects.filter(status__in=Delivery.OPEN).exists():
            tracking.run_due()
            return
        for subscription in event_bus.subscriptions():
            run_deliveries_now(subscription.name)
    raise AssertionError("the saga did not come to rest")


def open_orders(tenant, customer, first: int, count: int) -> None:
    """Orders `first`..`first + count - 1`, order n with n lines; the last one shipped."""
    for n in range(first, first + count):
        product_create(tenant=tenant, sku=f"BOOK-{n}", title=f"Book {n}", price=Decimal("10.00"), stock=50)
        lines = [{"sku": f"BOOK-{k}", "quantity": 1} for k in range(1, n + 1)]
        order_place(tenant=tenant, customer=customer, items=lines, payment_token="tok_visa")
    settle()
    last = Order.objects.filter(tenant=tenant).order_by("-created_at").first()
    order_fulfill(order=last, tracking_number=f"TRACK-{first}")
    settle()


def queries(client: Client, url: str) -> list[str]:
    # The content types are cached per process once read: read them on every page, so that the
    # first page of a model counts as the others do.
    ContentType.objects.clear_cache()
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return [q["sql"] for q in captured.captured_queries]


def pages(tenant) -> dict[str, list[str]]:
    """Every registered model's change pages: the tenant's 4 newest rows (any tenant's where the
    model has none), which differ in lines, events and deliveries: the newest order has the most."""
    found = {}
    for model in admin.site._registry:
        label = model._meta.label_lower
        if label not in PAGES:
            continue
        rows = model._default_manager.all()
        names = {f.name for f in model._meta.concrete_fields} | {f.attname for f in model._meta.concrete_fields}
        if "tenant_id" in names:
            rows = rows.filter(tenant_id=tenant.id)
        newest = "-created_at" if "created_at" in names else "-pk"
        keys = list(rows.order_by(newest, "-pk").values_list("pk", flat=True)[:4])
        found[label] = [
            reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[k]) for k in keys
        ]
    return found


def measure(client: Client, who: int, tenant) -> dict[str, set[int]]:
    counts: dict[str, set[int]] = {}
    for label, expected in LISTS.items():
        if expected[who] is None:
            continue
        app_label, model_name = label.split(".")
        counts[f"list {label}"] = {len(queries(client, reverse(f"admin:{app_label}_{model_name}_changelist")))}
    for label, urls in pages(tenant).items():
        if PAGES[label][who] is None:
            continue
        assert urls, f"no {label} row to open"
        counts[f"page {label}"] = {len(queries(client, url)) for url in urls}
    home = reverse("admin:index") + ("" if who == 0 else f"?tenant={tenant.slug}")
    counts["dashboard"] = {len(queries(client, home))}
    return counts


def pinned(who: int) -> dict[str, set[int]]:
    expected = {f"list {label}": {counts[who]} for label, counts in LISTS.items() if counts[who] is not None}
    expected |= {f"page {label}": {counts[who]} for label, counts in PAGES.items() if counts[who] is not None}
    return expected | {"dashboard": {DASHBOARD[who]}}


def test_every_admin_page_runs_a_fixed_number_of_queries_however_many_rows(tenant, staff, customer):
    staff_client, operator_client = Client(), Client()
    staff_client.force_login(staff)
    operator_client.force_login(UserFactory(username="root", tenant=None, is_staff=True, is_superuser=True))
    clients = {0: staff_client, 1: operator_client}  # by the index of LISTS', PAGES' and DASHBOARD's columns
    WebhookEndpointFactory(tenant=tenant, url="https://erp.example.com/hooks")
    subscribers.register()  # the handlers' rows, as every relay writes them (an earlier test's flush took them)

    open_orders(tenant, customer, first=1, count=2)
    few = {who: measure(client, who, tenant) for who, client in clients.items()}
    open_orders(tenant, customer, first=3, count=4)
    many = {who: measure(client, who, tenant) for who, client in clients.items()}

    assert Order.objects.filter(tenant=tenant).count() == 6
    for who in clients:
        changed = {page: (few[who][page], counts) for page, counts in many[who].items() if counts != few[who][page]}
        assert not changed, ("staff", "operator")[who]
        assert many[who] == pinned(who), ("staff", "operator")[who]
