"""seed_demo (docs/operations.md): the demo bookstore with a stocked catalog, idempotent, and how to use it."""

import json
import shlex
from io import StringIO

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from domain_events.models import StoredEvent
from inventory.models import Product
from tenants.models import Tenant, User

pytestmark = pytest.mark.django_db


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def counts() -> dict[str, int]:
    return {
        "tenants": Tenant.objects.count(),
        "users": User.objects.count(),
        "products": Product.objects.count(),
        "events": StoredEvent.objects.count(),
    }


def curl_of(output: str) -> list[str]:
    [line] = [line for line in output.splitlines() if line.strip().startswith("curl ")]
    return shlex.split(line)


def test_seeds_a_stocked_catalog_through_the_services():
    output = seed()

    demo = Tenant.objects.get(slug="demo")
    products = Product.objects.filter(tenant=demo)
    assert products.count() >= 6
    assert all(p.on_hand > 0 and p.price > 0 for p in products)
    initial = StoredEvent.objects.filter(type="inventory.stock_adjusted", tenant_id=demo.pk)
    assert initial.count() == products.count()
    assert {e.payload["reason"] for e in initial} == {"initial_stock"}
    assert User.objects.get(username="staff").is_staff
    assert not User.objects.get(username="alice").is_staff
    assert "http://127.0.0.1:8000/admin/" in output
    assert "staff/staff" in output
    assert "alice/alice" in output


def test_running_twice_creates_nothing_twice():
    first = seed()
    before = counts()
    second = seed()
    assert counts() == before
    # The same tokens both times: nothing was recreated.
    assert [line for line in first.splitlines() if "token" in line] == [
        line for line in second.splitlines() if "token" in line
    ]


def test_prints_both_tokens_and_a_curl_that_orders_a_demo_book_as_alice():
    output = seed()
    staff_token = User.objects.get(username="staff").auth_token.key
    alice_token = User.objects.get(username="alice").auth_token.key
    assert f"staff token: {staff_token}" in output
    assert f"alice token: {alice_token}" in output

    argv = curl_of(output)
    assert argv[:5] == ["curl", "-s", "-X", "POST", "http://127.0.0.1:8000/api/v1/orders/"]
    headers = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-H"]
    assert headers == [f"Authorization: Token {alice_token}", "Content-Type: application/json"]
    body = json.loads(argv[argv.index("-d") + 1])
    assert body["payment_token"] == "tok_visa"
    [item] = body["items"]
    assert item["quantity"] == 1

    # The token works and the sku is a book alice can buy right now.
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {alice_token}")
    catalog = {p["sku"]: p for p in client.get("/api/v1/products/").json()["results"]}
    assert catalog[item["sku"]]["available"] >= 1
