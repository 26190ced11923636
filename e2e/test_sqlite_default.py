"""The zero-setup default of `make run`: SQLite and the filesystem Celery transport, no server.

Not what the suite proves the guarantees on (that is PostgreSQL), but every feature must keep
working there: an order placed through the API ends confirmed through a real worker and relay
(payment captured), its confirmation e-mail appears on the worker's console, a webhook endpoint
receives every event signed, every position reader (the projections, the audit chain) reaches the
head without an error, the dashboard shows the order and `verify_audit_log` finds the trail whole.
A reader that fails on SQLite (as the audit chain's once did, on DISTINCT ON) fails this test.
"""

import json
import sys

import pytest

from e2e.sqlite import manage
from testsupport.processes import ManagedProcess, celery_worker_argv, wait_until
from webhooks.tests.receiver import Receiver, running

pytestmark = pytest.mark.e2e

REGISTER_WEBHOOK = """
from django.test import Client
from tenants.models import User
from tenants.services import token_issue
staff = User.objects.get(username="staff")
client = Client(HTTP_AUTHORIZATION=f"Token {token_issue(user=staff).key}")
response = client.post(
    "/api/v1/webhook-endpoints/", {"url": "RECEIVER_URL", "event_types": []}, content_type="application/json"
)
print("ENDPOINT", response.status_code, response.json().get("secret"))
"""

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
from audit.models import AuditEntry
from domain_events import reader_lag, tracking
from domain_events.models import Delivery, StoredEvent
from webhooks.models import WebhookDelivery
from tenants.models import User
from tenants.services import token_issue
staff = User.objects.get(username="staff")
dashboard = Client(HTTP_AUTHORIZATION=f"Token {token_issue(user=staff).key}").get("/api/v1/dashboard/").json()
print("STATE", json.dumps({
    "orders": [o.status for o in Order.objects.all()],
    "open": Delivery.objects.filter(status__in=Delivery.OPEN).count(),
    "positions": sorted(Delivery.objects.values_list("stored_event__position", flat=True).distinct()),
    "dashboard": dashboard,
    "events": StoredEvent.objects.count(),
    "readers": {r.name: [r.position, r.head, r.last_error] for r in reader_lag.lags()},
    "audit_entries": AuditEntry.objects.count(),
    "webhooks": sorted(WebhookDelivery.objects.values_list("status", flat=True)),
}))
"""


def test_an_order_runs_every_reader_and_side_effect_on_the_zero_setup_default(sqlite_env, tmp_path):
    manage(sqlite_env, "migrate", "--no-input", "--verbosity", "0")
    assert "alice" in manage(sqlite_env, "seed_demo")

    worker = ManagedProcess("sqlite-worker", celery_worker_argv("sqlite", concurrency=1), tmp_path, sqlite_env)
    relay = ManagedProcess("sqlite-relay", [sys.executable, "manage.py", "run_outbox_relay"], tmp_path, sqlite_env)
    try:
        with running(Receiver()) as receiver:
            registered = manage(
                sqlite_env, "shell", "-c", REGISTER_WEBHOOK.replace("RECEIVER_URL", receiver.url)
            ).split()
            assert registered[registered.index("ENDPOINT") + 1] == "201"
            secret = registered[registered.index("ENDPOINT") + 2]
            placed = manage(sqlite_env, "shell", "-c", PLACE_ORDER)
            assert "ORDER 201" in placed

            def state() -> dict:
                out = manage(sqlite_env, "shell", "-c", SHOW)
                return json.loads(out.split("STATE", 1)[1])

            def settled() -> dict | bool:
                s = state()
                readers_at_head = all(p == h and not e for p, h, e in s["readers"].values())
                return (
                    s["orders"] == ["confirmed"]
                    and s["open"] == 0
                    and readers_at_head
                    and s["audit_entries"] == s["events"]
                    # The order's four events; the catalog's stock events came before the endpoint.
                    and s["webhooks"] == ["succeeded"] * 4
                    and s["dashboard"]["orders_this_month"] == 1
                    # The projection follows the handlers: the confirmation may show a moment later.
                    and s["dashboard"]["revenue_this_month"] != "0.00"
                    and s
                )

            try:
                final = wait_until(settled, timeout=90, what="the order to settle on SQLite: every reader and effect")
            except AssertionError as timeout:
                raise AssertionError(f"{timeout}; last state: {state()}\nrelay:\n{relay.output()[-3000:]}") from None
            assert {"analytics.sales", "audit.chain"} <= set(final["readers"]), "every position reader ran"
            assert None not in final["positions"], "every event got its position"
            assert final["dashboard"]["revenue_this_month"] == "39.98"
            cloudevents = receiver.events(secret)  # every delivery signed with the endpoint's secret
            assert [e.get_type() for e in cloudevents] == [
                "order.placed",
                "inventory.reserved",
                "payment.captured",
                "order.confirmed",
            ]
        wait_until(lambda: "is confirmed" in worker.output(), timeout=30, what="the e-mail on the worker's console")
        assert "alice@demo.shelfwise.localhost" in worker.output()
        audit = manage(sqlite_env, "verify_audit_log")
        assert f"demo: {final['events']} entries" in audit
        assert "Audit log intact." in audit
        assert "failed" not in relay.output(), "no position reader or pass failed on SQLite"
    finally:
        worker.kill()
        relay.kill()
