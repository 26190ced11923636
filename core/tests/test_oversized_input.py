"""Oversized bodies, headers and URLs are JSON 400s through the whole Django application, never a
500 or an HTML page (over gunicorn: `e2e/test_oversized_over_gunicorn.py`)."""

import json

import pytest
from django.conf import settings
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

ORDERS = "/api/v1/orders/"


def assert_json_400(response, code: str) -> dict:
    assert response.status_code == 400, response.content[:200]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == code, body
    assert body["detail"]
    return body


def order(**extra) -> dict:
    return {"items": [{"sku": "BOOK-1", "quantity": 1}], "payment_token": "tok_visa", **extra}


def test_a_json_body_past_the_upload_limit_is_a_400_and_one_at_it_is_read(customer_api):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    padding = "x" * limit
    too_big = json.dumps(order(note=padding))
    assert_json_400(customer_api.post(ORDERS, too_big, content_type="application/json"), "too_large")
    # At the limit the body is parsed, and refused for what it says (an unknown field), not its size.
    at_limit = json.dumps(order(note=""))
    at_limit = json.dumps(order(note="x" * (limit - len(at_limit))))
    assert len(at_limit) == limit
    response = customer_api.post(ORDERS, at_limit, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["note"] == ["Unknown field."]


def test_a_body_past_the_limit_is_a_400_without_authentication_too():
    body = "[" + "0," * settings.DATA_UPLOAD_MAX_MEMORY_SIZE + "0]"
    response = APIClient().post("/api/v1/auth/token", body, content_type="application/json")
    assert_json_400(response, "too_large")


def test_a_json_object_with_too_many_fields_is_a_400(customer_api):
    fields = {f"f{n}": n for n in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)}
    response = customer_api.post(ORDERS, json.dumps(order(extra=fields)), content_type="application/json")
    assert_json_400(response, "too_many_fields")


def test_a_query_string_with_too_many_fields_is_a_400(customer_api):
    query = "&".join(["a=1"] * (settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    assert len(query) < settings.REQUEST_MAX_LINE
    assert_json_400(customer_api.get(f"/api/v1/products/?{query}"), "too_many_fields")


def test_a_form_with_too_many_fields_is_a_400_in_the_admin_too(client):
    fields = {f"f{n}": "1" for n in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)}
    response = client.post("/admin/login/", fields)
    assert_json_400(response, "too_many_fields")


@pytest.mark.parametrize("header", ["HTTP_AUTHORIZATION", "HTTP_IDEMPOTENCY_KEY", "HTTP_X_ANYTHING"])
def test_a_header_past_the_limit_is_a_400_before_authentication(header):
    value = "Token " + "k" * settings.REQUEST_MAX_HEADER_BYTES
    response = APIClient().post(ORDERS, order(), format="json", **{header: value})
    body = assert_json_400(response, "too_large")
    assert "header" in body["detail"]


def test_a_long_token_within_the_limit_is_a_401_and_a_long_key_a_400_naming_it(customer, customer_api):
    unauthenticated = APIClient().get("/api/v1/products/", HTTP_AUTHORIZATION="Token " + "k" * 4000)
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["code"] == "authentication_failed"
    response = customer_api.post(ORDERS, order(), format="json", HTTP_IDEMPOTENCY_KEY="k" * 4000)
    body = assert_json_400(response, "invalid")
    assert "idempotency_key" in body


def test_too_many_header_fields_is_a_400(customer_api):
    headers = {f"HTTP_X_FIELD_{n}": "1" for n in range(settings.REQUEST_MAX_HEADERS)}
    assert_json_400(customer_api.get("/api/v1/products/", **headers), "too_large")


def test_a_url_past_the_limit_is_a_400_and_one_within_it_answers_normally(customer_api):
    assert_json_400(customer_api.get("/api/v1/products/" + "s" * settings.REQUEST_MAX_LINE + "/"), "too_large")
    assert_json_400(customer_api.get("/api/v1/products/?status=" + "s" * settings.REQUEST_MAX_LINE), "too_large")
    long_sku = customer_api.get("/api/v1/products/" + "s" * 4000 + "/")
    assert long_sku.status_code == 404
    assert long_sku.json()["code"] == "not_found"
