"""Two bookstores with a history, built through the API, for the tenant-isolation tests.

Each bookstore gets staff, two customers with e-mail addresses, products (one sku in both
catalogues), a webhook endpoint on a real loopback receiver, and orders that end confirmed,
fulfilled, declined, cancelled by the customer, and stuck on a dead letter (the provider never
answers `tok_timeout`). Every delivery is then run here, as relays and workers would, e-mails go
through a real SMTP server and webhooks to the receiver, and the position readers (read models,
audit chain) catch up: every kind of row a person can read exists in both bookstores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from domain_events import tracking
from domain_events.bus import event_bus
from domain_events.models import Delivery
from inbound.models import InboxMessage
from inbound.services import notice_receive
from tenants.models import Tenant, User
from tenants.services import token_issue
from tenants.tests.factories import TenantFactory, UserFactory
from testsupport.outbox import run_deliveries_now
from webhooks.models import WebhookDelivery
from webhooks.services import delivery_send
from webhooks.tests.receiver import Receiver, running

SHARED_SKU = "BOOK-SHARED"


def api_client_for(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_issue(user=user).key}")
    return client


@dataclass
class Bookstore:
    tenant: Tenant
    staff: User
    customer: User
    neighbour: User  # another customer of the same bookstore
    skus: list[str]
    orders: dict[str, str]  # what became of it → order id
    endpoint_id: str = ""
    secret: str = ""
    payment_token: str = ""  # a private value: the token of the declined order

    @property
    def label(self) -> str:
        return self.tenant.slug


@dataclass
class World:
    a: Bookstore
    b: Bookstore
    received: list = field(default_factory=list)  # webhook requests the receiver got
    emails: list = field(default_factory=list)  # messages the SMTP server got


def _bookstore(slug: str, name: str, currency: str, receiver: Receiver) -> Bookstore:
    tenant = TenantFactory(slug=slug, name=name, currency=currency)
    staff = UserFactory(tenant=tenant, username=f"{slug}-staff", email=f"staff@{slug}.example", is_staff=True)
    customer = UserFactory(tenant=tenant, username=f"{slug}-carol", email=f"carol@{slug}.example")
    neighbour = UserFactory(tenant=tenant, username=f"{slug}-nick", email=f"nick@{slug}.example")
    store = Bookstore(tenant, staff, customer, neighbour, [], {}, payment_token=f"tok_visa_{slug.upper()}_SECRET123")
    staff_api = api_client_for(staff)
    own_sku = f"BOOK-{slug.upper()}"
    for sku, title in ((own_sku, f"Only at {name}"), (SHARED_SKU, "Dune")):
        created = staff_api.post(
            "/api/v1/products/", {"sku": sku, "title": title, "price": "12.50", "stock": 40}, format="json"
        )
        assert created.status_code == 201, created.content
        store.skus.append(sku)
    endpoint = staff_api.post(
        "/api/v1/webhook-endpoints/",
        {"url": f"{receiver.url}/{slug}", "description": f"ERP of {name}"},
        format="json",
    )
    assert endpoint.status_code == 201, endpoint.content
    store.endpoint_id, store.secret = endpoint.json()["id"], endpoint.json()["secret"]
    return store


def _place(store: Bookstore, who: User, label: str, token: str, quantity: int) -> None:
    sku = store.skus[0] if label != "neighbours" else SHARED_SKU
    placed = api_client_for(who).post(
        "/api/v1/orders/",
        {"items": [{"sku": sku, "quantity": quantity}], "payment_token": token},
        format="json",
    )
    assert placed.status_code == 201, placed.content
    store.orders[label] = placed.json()["id"]


def settle() -> None:
    """Run every open delivery here, send every due webhook, and bring the readers to the head."""
    for _ in range(12):
        for subscription in event_bus.subscriptions():
            run_deliveries_now(subscription.name)
        for delivery_id in WebhookDelivery.objects.filter(status__in=WebhookDelivery.OPEN).order_by("position"):
            delivery_send(delivery_id=delivery_id.pk)
        tracking.run_due()
        if not (
            Delivery.objects.filter(status__in=Delivery.OPEN).exists()
            or WebhookDelivery.objects.filter(status__in=WebhookDelivery.OPEN).exists()
        ):
            return
    raise AssertionError("the sagas did not come to rest")


def build_world(mailbox) -> World:
    """Both bookstores and their histories; B's orders are more and bigger, so figures differ."""
    with running(Receiver()) as receiver, override_settings(WEBHOOK_ALLOW_PRIVATE_NETWORKS=True, **mailbox.settings):
        a = _bookstore("iso-a", "Ashford Books", "USD", receiver)
        b = _bookstore("iso-b", "Brightwater Books", "EUR", receiver)
        for n, store in enumerate((a, b), start=1):
            _place(store, store.customer, "confirmed", "tok_visa", n)
            _place(store, store.customer, "fulfilled", "tok_visa", n + 1)
            _place(store, store.customer, "declined", store.payment_token, n)
            _place(store, store.customer, "cancelled", "tok_visa", n)
            _place(store, store.customer, "stuck", "tok_timeout", n)
            _place(store, store.neighbour, "neighbours", "tok_visa", n)
        settle()
        for store in (a, b):
            staff_api = api_client_for(store.staff)
            fulfilled = staff_api.post(
                f"/api/v1/orders/{store.orders['fulfilled']}/fulfill", {"tracking_number": "TRK-1"}, format="json"
            )
            assert fulfilled.status_code == 200, fulfilled.content
            cancelled = api_client_for(store.customer).post(f"/api/v1/orders/{store.orders['cancelled']}/cancel")
            assert cancelled.status_code == 200, cancelled.content
        for store in (a, b):
            # The distributor reports the fulfilled order lost: an inbox row and a lost shipment each.
            notice_receive(
                tenant=store.tenant,
                message_id=f"lost-{store.tenant.slug}",
                source=InboxMessage.Source.WEBHOOK,
                notice={
                    "type": "lost",
                    "order_id": UUID(store.orders["fulfilled"]),
                    "tracking_number": "TRK-1",
                    "occurred_at": timezone.now(),
                },
                body=b"{}",
            )
        settle()
        world = World(a, b, list(receiver.received), list(mailbox.messages))
    assert Delivery.objects.filter(status=Delivery.Status.DEAD, tenant_id=a.tenant.id).exists(), "a dead letter"
    assert Delivery.objects.filter(status=Delivery.Status.DEAD, tenant_id=b.tenant.id).exists(), "a dead letter"
    return world


def tenant_of(world: World, tenant_id: UUID | str) -> Bookstore:
    return world.a if str(world.a.tenant.id) == str(tenant_id) else world.b
