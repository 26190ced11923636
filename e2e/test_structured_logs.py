"""JSON logs across processes: a correlation id sent as `X-Request-ID` is on the log lines of the
web process (gunicorn), the relay and the Celery worker that handled its order, and on nothing of
another order; every line is one JSON object and no payment token is in any."""

from __future__ import annotations

import json
import sys

import pytest
import requests

from domain_events.models import StoredEvent
from tenants.services import token_issue
from testsupport.processes import free_port, http_up, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

JSON_LOGS = {"LOG_FORMAT": "json"}


def json_lines(process) -> list[dict]:
    lines = [line for line in process.output().splitlines() if line.strip()]
    records = []
    for line in lines:
        record = json.loads(line)  # fails the test on any line that is not one JSON object
        assert isinstance(record, dict), line
        records.append(record)
    return records


def test_one_orders_correlation_id_runs_through_web_relay_and_worker_logs_and_no_other_orders(
    processes, staff, customer
):
    port = free_port()
    gunicorn = [sys.executable, "-m", "gunicorn", "config.wsgi", "-c", "config/gunicorn.conf.py"]
    web = processes.start(
        "web",
        [*gunicorn, "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        OUTBOX_DISPATCH_ON_COMMIT="false",  # the web process only records; relays and workers do the rest
        **JSON_LOGS,
    )
    worker = processes.worker("worker", quiet=True, **JSON_LOGS)
    relay = processes.relay("relay", **JSON_LOGS)
    base = f"http://127.0.0.1:{port}/api/v1"
    wait_until(lambda: http_up(f"http://127.0.0.1:{port}/healthz"), timeout=30, what="gunicorn")
    staff_headers = {"Authorization": f"Token {token_issue(user=staff).key}"}
    customer_headers = {"Authorization": f"Token {token_issue(user=customer).key}"}
    created = requests.post(
        f"{base}/products/",
        json={"sku": "DUNE-1", "title": "Dune", "price": "9.99", "stock": 10},
        headers=staff_headers,
        timeout=10,
    )
    assert created.status_code == 201, created.text

    orders = {}
    for correlation_id in ("story-of-order-a", "story-of-order-b"):
        response = requests.post(
            f"{base}/orders/",
            json={"items": [{"sku": "DUNE-1", "quantity": 1}], "payment_token": "tok_visa"},
            headers={**customer_headers, "X-Request-ID": correlation_id},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        assert response.headers["X-Request-ID"] == correlation_id
        orders[correlation_id] = response.json()["id"]

    def confirmed() -> bool:
        return StoredEvent.objects.filter(type="order.confirmed", aggregate_id__in=orders.values()).count() == 2

    wait_until(confirmed, timeout=60, what="both orders confirmed")
    stored = StoredEvent.objects.values_list("event_id", flat=True)
    events = {c: {str(e) for e in stored.filter(aggregate_id=order)} for c, order in orders.items()}
    assert all(len(ids) >= 4 for ids in events.values())  # placed, reserved, captured, confirmed

    def logged(process) -> list[dict]:
        return [r for r in json_lines(process) if r.get("correlation_id") in orders]

    def captured_in_the_log() -> bool:
        # The capture's own "ran" line is written after the confirmation it leads to may be stored.
        ran = {r["correlation_id"] for r in logged(worker) if r.get("handler") == "payments.capture_payment_for_order"}
        return ran == set(orders)

    wait_until(captured_in_the_log, timeout=10, what="the worker's capture lines")
    by_process = {"web": json_lines(web), "relay": json_lines(relay), "worker": json_lines(worker)}
    for name, records in by_process.items():
        for correlation_id in orders:
            mine = [r for r in records if r.get("correlation_id") == correlation_id]
            assert mine, f"{correlation_id} is in the {name} log"
            other = next(o for c, o in orders.items() if c != correlation_id)
            for record in mine:
                assert other not in json.dumps(record), f"a line of {correlation_id} mentions another order"
                if "event_id" in record:
                    assert record["event_id"] in events[correlation_id], "the event is of this order's story"
        assert "tok_visa" not in json.dumps(records), f"a payment token in the {name} log"

    [request_line] = [
        r for r in by_process["web"] if r.get("correlation_id") == "story-of-order-a" and "POST" in r["message"]
    ]
    assert request_line["tenant_id"] == str(customer.tenant_id)
    assert request_line["message"].startswith("POST /api/v1/orders/ 201")
    handlers = {r.get("handler") for r in by_process["relay"] + by_process["worker"] if r.get("correlation_id")}
    assert {"inventory.reserve_stock_for_order", "payments.capture_payment_for_order"} <= handlers
    assert all(r.get("tenant_id") == str(customer.tenant_id) for r in logged(worker) if "handler" in r)
