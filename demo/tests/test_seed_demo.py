"""seed_demo (docs/operations.md): the demo bookstore with a stocked catalog, idempotent, and how to use it."""

import json
import shlex
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from domain_events.models import StoredEvent
from inventory.models import Product
from tenants.models import ApiToken, Tenant, User, token_key_hash
from tenants.tests.factories import TenantFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _development(settings):
    """`make run` runs seed_demo with DEBUG on."""
    settings.DEBUG = True


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


def token_of(output: str, username: str) -> str:
    [line] = [line for line in output.splitlines() if line.strip().startswith(f"{username} token: ")]
    return line.split(": ", 1)[1].strip()


def api_status(token: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client.get("/api/v1/products/").status_code


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
    # New tokens each time (only their hashes are stored); the ones printed before are revoked.
    old, new = token_of(first, "alice"), token_of(second, "alice")
    assert old != new
    assert api_status(old) == 401
    assert api_status(new) == 200


def test_prints_both_tokens_and_a_curl_that_orders_a_demo_book_as_alice():
    output = seed()
    staff_token, alice_token = token_of(output, "staff"), token_of(output, "alice")
    assert ApiToken.objects.get(user__username="staff", revoked_at=None).key_hash == token_key_hash(staff_token)
    assert ApiToken.objects.get(user__username="alice", revoked_at=None).key_hash == token_key_hash(alice_token)

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


def test_refuses_to_run_with_debug_off_unless_told_to(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="--allow-without-debug"):
        seed()
    assert not Tenant.objects.filter(slug="demo").exists()
    out = StringIO()
    call_command("seed_demo", "--allow-without-debug", stdout=out)
    assert "alice token: " in out.getvalue()


def test_stays_inside_the_demo_bookstore_and_never_prints_another_tenants_users_token():
    other = TenantFactory(slug="real-shop")
    real = UserFactory(tenant=other, username="alice")
    with pytest.raises(CommandError, match="outside the demo bookstore"):
        seed()
    assert not ApiToken.objects.filter(user=real).exists()
    real.refresh_from_db()
    assert real.email == ""


def test_its_events_are_the_systems():
    seed()
    assert set(StoredEvent.objects.values_list("actor", flat=True)) == {"system"}


def test_run_by_someone_its_events_are_theirs():
    operator = UserFactory(username="ops", tenant=None, is_staff=True, is_superuser=True)
    call_command("seed_demo", "--by", "ops", stdout=StringIO())
    assert StoredEvent.objects.exists()
    assert set(StoredEvent.objects.values_list("actor", flat=True)) == {f"operator:{operator.pk}"}


def test_by_an_unknown_user_is_a_clear_error_and_changes_nothing():
    before = counts()
    with pytest.raises(CommandError, match="--by: no active user named 'nobody'"):
        call_command("seed_demo", "--by", "nobody", stdout=StringIO())
    assert counts() == before
