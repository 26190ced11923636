"""API tokens: stored as hashes, shown once, expiring, rotated and revoked, revoked by a password change."""

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.forms import SetPasswordForm
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from tenants.models import ApiToken, token_key_hash
from tenants.services import token_issue

pytestmark = pytest.mark.django_db

TOKEN = "/api/v1/auth/token"


def obtain(username: str = "carol", password: str = "secret") -> str:  # noqa: S107
    response = APIClient().post(TOKEN, {"username": username, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["token"]


def client_with(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def status_with(token: str) -> int:
    return client_with(token).get("/api/v1/products/").status_code


def test_only_a_hash_of_each_token_is_stored_and_each_request_gives_a_new_one(customer):
    first, second = obtain(), obtain()
    assert first != second
    assert len(first) == 40
    stored = ApiToken.objects.filter(user=customer)
    assert {t.key_hash for t in stored} == {token_key_hash(first), token_key_hash(second)}
    for token in stored:
        assert first not in str(token.__dict__)
        assert second not in str(token.__dict__)
    assert status_with(first) == status_with(second) == 200


def test_a_token_expires_after_api_token_ttl_days(customer, settings):
    settings.API_TOKEN_TTL_DAYS = 3
    token = obtain()
    stored = ApiToken.objects.get(key_hash=token_key_hash(token))
    assert stored.expires_at - stored.created_at == timedelta(days=3)
    with time_machine.travel(timezone.now() + timedelta(days=3, seconds=1)):
        response = client_with(token).get("/api/v1/products/")
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid token."


def test_rotate_gives_a_new_token_and_revokes_the_one_used(customer):
    old = obtain()
    response = client_with(old).post("/api/v1/auth/token/rotate")
    assert response.status_code == 200
    new = response.json()["token"]
    assert new != old
    assert status_with(old) == 401
    assert status_with(new) == 200
    assert APIClient().post("/api/v1/auth/token/rotate").status_code == 401


def test_revoke_through_the_api_ends_the_token_used_and_no_other(customer):
    kept, revoked = obtain(), obtain()
    assert client_with(revoked).post("/api/v1/auth/token/revoke").status_code == 204
    assert status_with(revoked) == 401
    assert status_with(kept) == 200


def test_a_password_change_revokes_every_token_of_the_user(customer, staff):
    tokens = [obtain(), obtain()]
    others = token_issue(user=staff).key
    form = SetPasswordForm(customer, {"new_password1": "a-brand-new-pass-42", "new_password2": "a-brand-new-pass-42"})
    assert form.is_valid(), form.errors
    form.save()
    assert [status_with(t) for t in tokens] == [401, 401]
    assert status_with(others) == 200
    assert status_with(obtain(password="a-brand-new-pass-42")) == 200


def test_operators_revoke_tokens_in_the_admin_and_never_see_a_key(customer, db):
    from tenants.tests.factories import UserFactory

    operator = UserFactory(username="olga", tenant=None, is_staff=True, is_superuser=True)
    token = obtain()
    admin = Client()
    admin.force_login(operator)
    listing = admin.get("/admin/tenants/apitoken/").content.decode()
    assert token[:8] in listing
    assert token not in listing
    stored = ApiToken.objects.get(key_hash=token_key_hash(token))
    response = admin.post(
        "/admin/tenants/apitoken/", {"action": "revoke", "_selected_action": [str(stored.pk)]}, follow=True
    )
    assert response.status_code == 200
    assert status_with(token) == 401

    again = obtain()
    admin.post("/admin/tenants/user/", {"action": "revoke_api_tokens", "_selected_action": [str(customer.pk)]})
    assert status_with(again) == 401
