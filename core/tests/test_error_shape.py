"""One error shape everywhere: `{"detail", "code", **field messages}`, documented as the `Error`
component of the OpenAPI document and answered so by DRF's views, Django's own handlers and the
middleware; and every write endpoint refuses a field it does not know, naming it."""

import json
import re

import pytest
from django.test import RequestFactory
from django.urls import get_resolver
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

API = "/api/v1"
UNKNOWN = "no_such_field"


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    for key in ("detail", "code"):
        assert isinstance(body[key], str), body
        assert body[key], body
    if code is not None:
        assert body["code"] == code, body
    return body


@pytest.fixture
def document(client) -> dict:
    return client.get(f"{API}/schema/", {"format": "json"}).json()


def operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_every_documented_error_is_the_error_component(document):
    assert set(document["components"]["schemas"]["Error"]["required"]) == {"detail", "code"}
    for path, method, operation in operations(document):
        errors = {code: r for code, r in operation["responses"].items() if code.startswith(("4", "5"))}
        assert {"400", "406"} <= set(errors), (method, path)
        if method in ("post", "put", "patch"):
            assert "415" in errors, (method, path)
        if operation.get("security") not in (None, [{}]):  # the token endpoint, the event contracts
            assert {"401", "403"} <= set(errors), (method, path)
        for code, response in errors.items():
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, code)


def test_django_and_drf_errors_have_the_one_shape(customer_api, staff_api):
    # 400: field messages beside detail and code.
    body = assert_error(staff_api.post(f"{API}/products/", {"sku": "B-1"}, format="json"), 400, "invalid")
    assert body["title"] == ["This field is required."]
    # 400 from the middleware, before any view.
    assert_error(customer_api.get(f"{API}/orders/?status=%00"), 400, "invalid")
    # 401, 403, 404 (DRF), 404 (an unknown path: Django's URL resolver).
    assert_error(APIClient().get(f"{API}/products/"), 401, "not_authenticated")
    assert_error(customer_api.get(f"{API}/dashboard/"), 403, "permission_denied")
    assert_error(customer_api.get(f"{API}/orders/00000000-0000-0000-0000-000000000000/"), 404, "not_found")
    assert_error(customer_api.get(f"{API}/no/such/path"), 404, "not_found")
    assert_error(customer_api.post(f"{API}/products"), 404, "not_found")  # no slash: no redirect either
    browser = APIClient(enforce_csrf_checks=True)  # a CSRF failure page is HTML: none under the API
    assert_error(browser.post(f"{API}/orders/not-a-uuid/cancel"), 404, "not_found")
    # 405, 406, 415.
    assert_error(customer_api.put(f"{API}/orders/"), 405, "method_not_allowed")
    assert_error(customer_api.get(f"{API}/products/", HTTP_ACCEPT="application/xml"), 406, "not_acceptable")
    form = customer_api.post(f"{API}/orders/", "items=x", content_type="application/x-www-form-urlencoded")
    assert_error(form, 415, "unsupported_media_type")
    # 400 and 409 from domain errors.
    product = {"sku": "B-1", "title": "Dune", "price": "9.99"}
    assert staff_api.post(f"{API}/products/", product, format="json").status_code == 201
    assert_error(staff_api.post(f"{API}/products/", product, format="json"), 409, "conflict")
    order = {"items": [{"sku": "NOPE", "quantity": 1}], "payment_token": "tok_visa"}
    assert_error(customer_api.post(f"{API}/orders/", order, format="json"), 400, "invalid")


def test_throttled_logins_have_the_one_shape(customer, settings):
    client = APIClient()
    for _ in range(10):
        client.post(f"{API}/auth/token", {"username": "carol", "password": "wrong"}, format="json")
    throttled = client.post(f"{API}/auth/token", {"username": "carol", "password": "wrong"}, format="json")
    assert_error(throttled, 429, "throttled")


def test_the_500_handler_answers_json():
    handler = get_resolver().resolve_error_handler(500)
    response = handler(RequestFactory().get(f"{API}/orders/"))
    assert response.status_code == 500
    assert json.loads(response.content) == {"detail": "Internal server error.", "code": "error"}


@pytest.fixture
def resources(staff_api) -> dict[str, str]:
    """A product, an order and a webhook endpoint of the staff's bookstore, created through the API."""
    product = staff_api.post(
        f"{API}/products/", {"sku": "B-1", "title": "Dune", "price": "9.99", "stock": 5}, format="json"
    )
    order = staff_api.post(
        f"{API}/orders/", {"items": [{"sku": "B-1", "quantity": 1}], "payment_token": "tok_visa"}, format="json"
    )
    endpoint = staff_api.post(f"{API}/webhook-endpoints/", {"url": "https://erp.example.com/hooks"}, format="json")
    assert (product.status_code, order.status_code, endpoint.status_code) == (201, 201, 201)
    return {
        "sku": "B-1",
        "order_id": order.json()["id"],
        "endpoint_id": endpoint.json()["id"],
        "delivery_id": "00000000-0000-0000-0000-000000000000",
    }


def test_every_write_endpoint_refuses_an_unknown_field_naming_it(document, staff_api, resources, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    writes = [(p, m, o) for p, m, o in operations(document) if m in ("post", "put", "patch")]
    assert len(writes) >= 12
    for path, method, operation in writes:
        if "{delivery_id}" in path:
            continue  # no delivery exists to reach its input: a 404 first (below)
        if "{tenant_slug}" in path:
            continue  # the distributor's: an unsigned request is 401 before its body is read (inbound's tests)
        url = re.sub(r"\{(\w+)\}", lambda m: resources[m.group(1)], path)
        response = getattr(staff_api, method)(url, {UNKNOWN: 1}, format="json")
        body = assert_error(response, 400, "invalid")
        assert body[UNKNOWN] == ["Unknown field."], (method, path, body)
        if "requestBody" in operation:
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            name = schema["$ref"].rsplit("/", 1)[-1]
            assert document["components"]["schemas"][name]["additionalProperties"] is False, (method, path)
