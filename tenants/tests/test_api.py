"""Token authentication: the token endpoint, 401 without a valid token."""

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_a_username_and_password_give_a_new_token_each_time(customer):
    response = APIClient().post("/api/v1/auth/token", {"username": "carol", "password": "secret"}, format="json")
    assert response.status_code == 200
    token = response.json()["token"]
    assert len(token) == 40
    again = APIClient().post("/api/v1/auth/token", {"username": "carol", "password": "secret"}, format="json")
    assert again.json()["token"] != token


def test_wrong_credentials_are_a_400_with_a_json_message(customer):
    response = APIClient().post("/api/v1/auth/token", {"username": "carol", "password": "nope"}, format="json")
    assert response.status_code == 400
    assert "non_field_errors" in response.json()


def test_missing_fields_and_invalid_json_are_json_errors():
    client = APIClient()
    missing = client.post("/api/v1/auth/token", {}, format="json")
    assert missing.status_code == 400
    assert set(missing.json()) == {"detail", "code", "username", "password"}
    assert missing.json()["code"] == "invalid"
    broken = client.post("/api/v1/auth/token", "{not json", content_type="application/json")
    assert broken.status_code == 400
    assert "JSON parse error" in broken.json()["detail"]
    assert broken.json()["code"] == "parse_error"


def test_a_token_request_loads_user_and_tenant_in_one_query(customer_api):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        response = customer_api.get("/api/v1/products/")
    assert response.status_code == 200
    tenant_reads = [q["sql"] for q in queries.captured_queries if 'FROM "tenants_tenant"' in q["sql"]]
    assert tenant_reads == []
    assert 'JOIN "tenants_tenant"' in queries.captured_queries[0]["sql"]


def test_no_token_or_a_bad_one_is_401(customer):
    assert APIClient().get("/api/v1/products/").status_code == 401
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    response = bad.get("/api/v1/products/")
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid token."


def test_password_guessing_is_throttled_per_username_with_retry_after(customer, settings):
    client = APIClient()
    for _ in range(10):
        wrong = client.post("/api/v1/auth/token", {"username": "carol", "password": "guess"}, format="json")
        assert wrong.status_code == 400
    throttled = client.post("/api/v1/auth/token", {"username": "carol", "password": "guess"}, format="json")
    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0
    assert "throttled" in throttled.json()["detail"].lower()
    # Even the right password waits: the limit is on guesses at the name, not on failures.
    right = client.post("/api/v1/auth/token", {"username": "carol", "password": "secret"}, format="json")
    assert right.status_code == 429
    # Another name from the same address is not held back by carol's limit.
    other = client.post("/api/v1/auth/token", {"username": "dave", "password": "guess"}, format="json")
    assert other.status_code == 400


def test_password_guessing_is_throttled_per_address_across_usernames(db):
    client = APIClient()
    codes = [
        client.post("/api/v1/auth/token", {"username": f"user-{n}", "password": "guess"}, format="json").status_code
        for n in range(31)
    ]
    assert codes[:30] == [400] * 30
    assert codes[30] == 429
