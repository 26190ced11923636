"""Webhook trouble for the dashboard: retrying and dead deliveries and failing endpoints, per bookstore."""

import uuid

import pytest
from django.utils import timezone

from webhooks.models import WebhookDelivery
from webhooks.selectors import delivery_list_for_subject, webhook_trouble_for
from webhooks.tests.factories import WebhookEndpointFactory

pytestmark = pytest.mark.django_db


def delivery(endpoint, status: str, subject: str = "order-1", position: int = 1) -> WebhookDelivery:
    return WebhookDelivery.objects.create(
        tenant_id=endpoint.tenant_id,
        endpoint=endpoint,
        event_id=uuid.uuid4(),
        event_type="order.confirmed",
        subject=subject,
        position=position,
        payload={},
        status=status,
        next_attempt_at=timezone.now(),
    )


def test_counts_of_the_bookstores_own_trouble_only(tenant, other_tenant):
    mine = WebhookEndpointFactory(tenant=tenant, failing_since=timezone.now())
    WebhookEndpointFactory(tenant=tenant, failing_since=timezone.now(), is_active=False)  # disabled: not counted
    theirs = WebhookEndpointFactory(tenant=other_tenant, failing_since=timezone.now())
    for status in ("failed", "failed", "dead", "succeeded", "pending"):
        delivery(mine, status)
    delivery(theirs, "dead")

    assert webhook_trouble_for(tenant_id=tenant.id) == {"failed": 2, "dead": 1, "failing_endpoints": 1}


def test_an_orders_deliveries_in_position_order(tenant, other_tenant):
    endpoint = WebhookEndpointFactory(tenant=tenant)
    later, earlier = delivery(endpoint, "succeeded", position=9), delivery(endpoint, "dead", position=3)
    delivery(endpoint, "succeeded", subject="order-2")
    delivery(WebhookEndpointFactory(tenant=other_tenant), "succeeded")
    assert delivery_list_for_subject(tenant_id=tenant.id, subject="order-1") == [earlier, later]


def test_the_endpoint_list_filters_the_failing_ones(staff_admin, tenant):
    WebhookEndpointFactory(tenant=tenant, url="https://failing.example/hook", failing_since=timezone.now())
    WebhookEndpointFactory(tenant=tenant, url="https://fine.example/hook")
    page = staff_admin.get("/admin/webhooks/webhookendpoint/", {"failing": "yes"}).content.decode()
    assert "failing.example" in page
    assert "fine.example" not in page
