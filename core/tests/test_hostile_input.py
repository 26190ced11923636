"""Hostile input is a JSON 400, never a 500: deep nesting, NUL characters in bodies, paths and queries."""

import json

import pytest
from rest_framework.test import APIClient

from core.parsers import MAX_DEPTH

pytestmark = pytest.mark.django_db


def test_a_body_nested_a_thousand_deep_is_a_400_without_authentication():
    body = "[" * 1000 + "]" * 1000
    response = APIClient().post("/api/v1/auth/token", body, content_type="application/json")
    assert response.status_code == 400
    assert f"nested more than {MAX_DEPTH} levels" in response.json()["detail"]


def test_nesting_past_the_limit_is_refused_and_up_to_it_parsed():
    def nested(depth: int) -> str:
        return json.dumps({"username": "x", "password": "y", "deep": json.loads("[" * (depth - 1) + "]" * (depth - 1))})

    too_deep = APIClient().post("/api/v1/auth/token", nested(MAX_DEPTH + 1), content_type="application/json")
    assert too_deep.status_code == 400
    assert "nested" in too_deep.json()["detail"]
    within = APIClient().post("/api/v1/auth/token", nested(MAX_DEPTH), content_type="application/json")
    assert "nested" not in json.dumps(within.json()), "a document at the limit is parsed (and fails on its fields)"


def test_a_nul_character_in_a_body_is_a_400_and_writes_nothing(customer_api):
    body = json.dumps({"items": [{"sku": "BOOK\u00001", "quantity": 1}], "payment_token": "tok_visa"})
    response = customer_api.post("/api/v1/orders/", body, content_type="application/json")
    assert response.status_code == 400
    assert "NUL" in response.json()["detail"]
    key = json.dumps({"items\u0000": [], "payment_token": "tok_visa"})
    assert customer_api.post("/api/v1/orders/", key, content_type="application/json").status_code == 400


def test_a_nul_character_in_a_path_or_a_query_is_a_400(customer_api, staff_admin):
    for url in ("/api/v1/products/%00/", "/api/v1/orders/?status=%00", "/api/v1/products/?x%00=1"):
        response = customer_api.get(url)
        assert response.status_code == 400, url
        assert "NUL" in response.json()["detail"]
    admin = staff_admin.get("/admin/orders/order/?status__exact=%00")
    assert admin.status_code == 400
