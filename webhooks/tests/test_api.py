"""The webhook endpoints API (docs/api.md): staff only, secrets shown once, JSON 400s, tenant 404s."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from webhooks.models import WebhookDelivery
from webhooks.tests.factories import WebhookEndpointFactory

pytestmark = pytest.mark.django_db

ENDPOINTS = "/api/v1/webhook-endpoints/"


@pytest.fixture(autouse=True)
def _public_urls_only(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False


def test_staff_create_an_endpoint_and_see_its_secret_only_then(staff_api):
    response = staff_api.post(
        ENDPOINTS,
        {"url": "https://93.184.215.14/hooks", "event_types": ["order.confirmed"], "description": "ERP"},
        format="json",
    )
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["secret"].startswith("whsec_")
    assert created["event_types"] == ["order.confirmed"]
    assert created["is_active"] is True

    listed = staff_api.get(ENDPOINTS).json()
    assert listed["count"] == 1
    assert "secret" not in listed["results"][0]
    detail = staff_api.get(f"{ENDPOINTS}{created['id']}/").json()
    assert "secret" not in detail
    assert created["secret"] not in str(staff_api.get(ENDPOINTS).content)


def test_rotate_gives_a_new_secret(staff_api, tenant):
    endpoint = WebhookEndpointFactory(tenant=tenant)
    first = staff_api.post(f"{ENDPOINTS}{endpoint.pk}/rotate-secret").json()["secret"]
    second = staff_api.post(f"{ENDPOINTS}{endpoint.pk}/rotate-secret").json()["secret"]
    assert first.startswith("whsec_")
    assert first != second


def test_patch_and_delete(staff_api, tenant):
    endpoint = WebhookEndpointFactory(tenant=tenant)
    response = staff_api.patch(f"{ENDPOINTS}{endpoint.pk}/", {"is_active": False}, format="json")
    assert response.status_code == 200
    assert response.json()["is_active"] is False
    assert staff_api.delete(f"{ENDPOINTS}{endpoint.pk}/").status_code == 204
    assert staff_api.get(f"{ENDPOINTS}{endpoint.pk}/").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://erp.example.com/x"}, "url"),
        ({"url": "https://user:pw@erp.example.com/x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "http://127.0.0.1:8080/hooks"}, "url"),
        ({"url": "http://localhost:8080/hooks"}, "url"),
        ({"url": "http://10.1.2.3/hooks"}, "url"),
        ({"url": "https://93.184.215.14/hooks", "event_types": ["order.exploded"]}, "event_types"),
        ({"url": "https://93.184.215.14/hooks", "secret": "whsec_mine"}, "secret"),
        ({}, "url"),
    ],
)
def test_bad_input_is_a_json_400_naming_the_field(staff_api, body, field):
    response = staff_api.post(ENDPOINTS, body, format="json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert field in response.json()


def test_a_loopback_url_is_accepted_when_private_networks_are_allowed(staff_api, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    response = staff_api.post(ENDPOINTS, {"url": "http://localhost:8080/hooks"}, format="json")
    assert response.status_code == 201


def test_another_tenants_endpoint_is_a_404(staff_api, other_tenant):
    theirs = WebhookEndpointFactory(tenant=other_tenant)
    assert staff_api.get(f"{ENDPOINTS}{theirs.pk}/").status_code == 404
    assert staff_api.patch(f"{ENDPOINTS}{theirs.pk}/", {"is_active": False}, format="json").status_code == 404
    assert staff_api.post(f"{ENDPOINTS}{theirs.pk}/rotate-secret").status_code == 404
    assert staff_api.get(f"{ENDPOINTS}{theirs.pk}/deliveries/").status_code == 404
    assert staff_api.get(ENDPOINTS).json()["count"] == 0


def test_customers_may_not_manage_webhooks(customer_api):
    assert customer_api.get(ENDPOINTS).status_code == 403


def _delivery(endpoint, status, **kwargs):
    now = timezone.now()
    defaults = {
        "tenant_id": endpoint.tenant_id,
        "event_id": uuid.uuid4(),
        "event_type": "order.confirmed",
        "subject": "s",
        "position": WebhookDelivery.objects.count() + 1,
        "payload": {},
        "status": status,
        "next_attempt_at": now,
        "attempts": 3,
        "last_attempt_at": now,
    }
    return WebhookDelivery.objects.create(endpoint=endpoint, **{**defaults, **kwargs})


def test_deliveries_list_redeliver_and_recover(staff_api, tenant):
    endpoint = WebhookEndpointFactory(tenant=tenant)
    dead = _delivery(endpoint, "dead", last_status_code=500)
    old = _delivery(endpoint, "dead", last_attempt_at=timezone.now() - timedelta(days=2))
    failed = _delivery(endpoint, "failed")
    done = _delivery(endpoint, "succeeded")

    listed = staff_api.get(f"{ENDPOINTS}{endpoint.pk}/deliveries/").json()
    assert listed["count"] == 4
    assert set(listed["results"][0]) >= {
        "event_id", "event_type", "status", "attempts", "last_status_code", "next_attempt_at"
    }  # fmt: skip

    since = (timezone.now() - timedelta(hours=1)).isoformat()
    response = staff_api.post(f"{ENDPOINTS}{endpoint.pk}/recover", {"since": since}, format="json")
    assert response.status_code == 202
    assert response.json() == {"recovering": 2}
    statuses = dict(WebhookDelivery.objects.values_list("pk", "status"))
    assert statuses == {dead.pk: "pending", failed.pk: "pending", old.pk: "dead", done.pk: "succeeded"}

    response = staff_api.post(f"{ENDPOINTS}{endpoint.pk}/deliveries/{old.pk}/redeliver")
    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    assert staff_api.post(f"{ENDPOINTS}{endpoint.pk}/recover", {"since": "yesterday"}, format="json").status_code == 400


def test_a_disabled_endpoint_cannot_be_redelivered_to(staff_api, tenant):
    endpoint = WebhookEndpointFactory(tenant=tenant, is_active=False)
    delivery = _delivery(endpoint, "dead")
    response = staff_api.post(f"{ENDPOINTS}{endpoint.pk}/deliveries/{delivery.pk}/redeliver")
    assert response.status_code == 409


@pytest.mark.parametrize(
    "url", ["ftp://erp.example.com/x", "https://user:pw@erp.example.com/x", "http://127.0.0.1:8080/hooks"]
)
def test_a_patch_checks_the_new_url_as_creation_does(staff_api, tenant, url):
    endpoint = WebhookEndpointFactory(tenant=tenant)
    response = staff_api.patch(f"{ENDPOINTS}{endpoint.pk}/", {"url": url}, format="json")
    assert response.status_code == 400
    assert "url" in response.json()
    endpoint.refresh_from_db()
    assert endpoint.url != url
