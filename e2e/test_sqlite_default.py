"""The zero-setup default of `make run`: SQLite and the filesystem Celery transport, no server.

Not what the suite proves the guarantees on (that is PostgreSQL), but every feature must keep
working there: an order placed through the API ends confirmed through a real worker and relay,
its confirmation e-mail appears on the worker's console, and the dashboard shows it.
"""

import json
import os
import subprocess
import sys

import pytest

from domain_events.testing import ROOT, ManagedProcess, celery_worker_argv, wait_until

pytestmark = pytest.mark.e2e

PLACE_ORDER = """
from django.test import Client
from tenants.models import User
from tenants.services import token_issue
alice = User.objects.get(username="alice")
client = Client(HTTP_AUTHORIZATION=f"Token {token_issue(user=alice).key}")
response = client.post(
    "/api/v1/orders/",
    {"items": [{"sku": "BOOK-DUNE", "quantity": 2}], "payment_token": "tok_visa"},
    content_type="application/json",
)
print("ORDER", response.status_code, response.json()["id"])
"""

SHOW = """
import json
from django.test import Client
from orders.models import Order
from domain_events.models import Delivery
from tenants.models import User
from tenants.services import token_issue
staff = User.objects.get(username="staff")
dashboard = Client(HTTP_AUTHORIZATION=f"Token {token_issue(user=staff).key}").get("/api/v1/dashboard/").json()
print("STATE", json.dumps({
    "orders": [o.status for o in Order.objects.all()],
    "open": Delivery.objects.filter(status__in=Delivery.OPEN).count(),
    "positions": sorted(Delivery.objects.values_list("stored_event__position", flat=True).distinct()),
    "dashboard": dashboard,
}))
"""


@pytest.fixture
def sqlite_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CELERY_BROKER_URL"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="true",  # as `make run` sets it
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        CELERY_FILESYSTEM_BROKER_DIR=str(tmp_path / "broker"),
        PYTHONUNBUFFERED="1",
    )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_an_order_is_confirmed_on_the_zero_setup_default(sqlite_env, tmp_path):
    manage(sqlite_env, "migrate", "--no-input", "--verbosity", "0")
    assert "alice" in manage(sqlite_env, "seed_demo")
    placed = manage(sqlite_env, "shell", "-c", PLACE_ORDER)
    assert "ORDER 201" in placed

    worker = ManagedProcess("sqlite-worker", celery_worker_argv("sqlite", concurrency=1), tmp_path, sqlite_env)
    relay = ManagedProcess("sqlite-relay", [sys.executable, "manage.py", "run_outbox_relay"], tmp_path, sqlite_env)
    try:

        def state() -> dict:
            out = manage(sqlite_env, "shell", "-c", SHOW)
            return json.loads(out.split("STATE", 1)[1])

        final = wait_until(
            lambda: (
                (s := state())["orders"] == ["confirmed"]
                and s["open"] == 0
                and s["dashboard"]["orders_this_month"] == 1
                # The projection follows the handlers: the confirmation may show a moment later.
                and s["dashboard"]["revenue_this_month"] != "0.00"
                and s
            ),
            timeout=60,
            what="the order to be confirmed on SQLite and shown on the dashboard",
        )
        assert None not in final["positions"], "every event got its position"
        assert final["dashboard"]["revenue_this_month"] == "39.98"
        wait_until(lambda: "is confirmed" in worker.output(), timeout=30, what="the e-mail on the worker's console")
        assert "alice@demo.shelfwise.localhost" in worker.output()
    finally:
        worker.kill()
        relay.kill()
