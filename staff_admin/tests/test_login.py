"""The admin's login page is throttled as `POST auth/token` is, sharing its limits and counts."""

import re

import pytest
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from tenants.throttling import TokenByUsernameThrottle

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"


def _guess(client: Client, username: str, password: str = "guess"):  # noqa: S107
    return client.post(LOGIN, {"username": username, "password": password, "next": "/admin/"})


def test_password_guessing_on_the_admin_login_is_throttled_and_then_even_the_right_password_waits(staff):
    client = Client()
    for _ in range(10):
        assert _guess(client, "sam").status_code == 200
    throttled = _guess(client, "sam")
    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0
    assert "Too many login attempts" in throttled.content.decode()
    right = _guess(client, "sam", "secret")
    assert right.status_code == 429
    assert "_auth_user_id" not in client.session


def test_an_unknown_username_gets_the_same_answers_as_a_known_one(staff):
    known = [_guess(Client(), "sam") for _ in range(11)]
    unknown = [_guess(Client(), "nobody-here") for _ in range(11)]
    assert [r.status_code for r in known] == [r.status_code for r in unknown] == [200] * 10 + [429]
    for known_page, unknown_page in ((known[0], unknown[0]), (known[-1], unknown[-1])):
        assert _error_note(known_page) == _error_note(unknown_page)


def _error_note(response) -> str:
    """The page's error note, the seconds to wait left out: the two answers come a moment apart."""
    page = response.content.decode()
    return re.sub(r"\d+ seconds", "N seconds", page[page.index('class="errornote"') :].split("</p>")[0])


def test_the_admin_and_the_api_share_one_count_per_username(staff):
    for _ in range(5):
        assert _guess(Client(), "sam").status_code == 200
    api = APIClient()
    token = "/api/v1/auth/token"
    for _ in range(5):
        assert api.post(token, {"username": "sam", "password": "guess"}, format="json").status_code == 400
    assert _guess(Client(), "sam").status_code == 429
    assert api.post(token, {"username": "sam", "password": "secret"}, format="json").status_code == 429


def test_the_admin_login_is_throttled_per_address_across_usernames(db):
    client = Client()
    codes = [_guess(client, f"user-{n}").status_code for n in range(31)]
    assert codes == [200] * 30 + [429]


def test_the_username_throttle_keeps_only_a_hash_of_the_name_in_its_cache_key():
    request = RequestFactory().post(LOGIN, {"username": "Carol.Secret", "password": "x"})
    key = TokenByUsernameThrottle().get_cache_key(request, None)
    assert key is not None
    assert "carol" not in key.lower()
    same = RequestFactory().post(LOGIN, {"username": " carol.secret ", "password": "x"})
    assert TokenByUsernameThrottle().get_cache_key(same, None) == key
