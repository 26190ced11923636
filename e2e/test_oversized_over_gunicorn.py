"""Oversized requests through gunicorn, as deployed (`config/gunicorn.conf.py`): what gunicorn refuses
itself, before Django runs, gets gunicorn's own short error page: 414 for a request line past 4094
bytes, 431 for a header field past 8190 bytes or more than 100 fields. Everything Django sees is a
JSON 400 (or the JSON 401 of a bad token). Nothing is a 5xx."""

from __future__ import annotations

import json
import sys

import pytest
import requests
from django.conf import settings

from tenants.services import token_issue
from testsupport.processes import free_port, http_up, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def web(processes) -> str:
    port = free_port()
    gunicorn = [sys.executable, "-m", "gunicorn", "config.wsgi", "-c", "config/gunicorn.conf.py"]
    processes.start("web", [*gunicorn, "--bind", f"127.0.0.1:{port}", "--workers", "1"])
    wait_until(lambda: http_up(f"http://127.0.0.1:{port}/healthz"), timeout=30, what="gunicorn")
    return f"http://127.0.0.1:{port}"


def test_gunicorn_refuses_past_its_limits_with_a_400_and_django_answers_json_within_them(web, customer):
    auth = {"Authorization": f"Token {token_issue(user=customer).key}"}
    orders = f"{web}/api/v1/orders/"
    body = {"items": [{"sku": "BOOK-1", "quantity": 1}], "payment_token": "tok_visa"}

    # Past gunicorn's limits: its own 4xx, never a 5xx.
    huge_header = requests.get(f"{web}/api/v1/products/", headers={"Authorization": "Token " + "k" * 9000}, timeout=10)
    assert huge_header.status_code == 431, huge_header.text
    long_url = requests.get(f"{web}/api/v1/products/?q=" + "q" * 5000, headers=auth, timeout=10)
    assert long_url.status_code == 414, long_url.text
    many = {f"X-Field-{n}": "1" for n in range(settings.REQUEST_MAX_HEADERS + 1)}
    too_many_headers = requests.get(f"{web}/api/v1/products/", headers={**auth, **many}, timeout=10)
    assert too_many_headers.status_code == 431, too_many_headers.text

    # Within them, Django answers, in JSON.
    long_token = requests.get(f"{web}/api/v1/products/", headers={"Authorization": "Token " + "k" * 8000}, timeout=10)
    assert long_token.status_code == 401
    assert long_token.json()["code"] == "authentication_failed"
    long_key = requests.post(orders, json=body, headers={**auth, "Idempotency-Key": "k" * 8000}, timeout=10)
    assert long_key.status_code == 400
    assert "idempotency_key" in long_key.json()
    big_body = json.dumps({**body, "note": "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE})
    too_big = requests.post(orders, data=big_body, headers={**auth, "Content-Type": "application/json"}, timeout=30)
    assert too_big.status_code == 400
    assert too_big.json()["code"] == "too_large"
    unknown = requests.get(f"{web}/api/v1/no-such-thing", headers=auth, timeout=10)
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "Not found.", "code": "not_found"}
