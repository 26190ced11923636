"""One order, one trace: a `POST orders/` through gunicorn, a relay and a Celery worker, exported
over OTLP/HTTP to a receiver in the test and decoded with `opentelemetry-proto`.

The web process leaves its handlers to the relay (`OUTBOX_DISPATCH_ON_COMMIT=false`), so the
order's story crosses all three kinds of process: the request in gunicorn; stock, payment
registration and the webhook fan-out in the relay; the capture task, the confirmation, the e-mail
and the webhook's POST in the worker. Every handler's span is in the request's trace and names its
handler, event type, bookstore and order; the webhook request, the e-mail and the stored events
carry the trace's `traceparent`.
"""

from __future__ import annotations

import sys

import pytest
import requests

from domain_events.models import StoredEvent
from tenants.services import token_issue
from testsupport.otlp import OtlpReceiver, Span
from testsupport.processes import free_port, http_up, wait_until
from webhooks.tests.receiver import Receiver, running

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HANDLERS = {
    "inventory.reserve_stock_for_order": "order.placed",
    "payments.register_payment_for_order": "order.placed",
    "payments.capture_payment_for_order": "inventory.reserved",
    "orders.confirm_order": "payment.captured",
    "notifications.email_customer_about_order": "order.confirmed",
    "webhooks.send_webhook": "order.confirmed",
}


def _tracing_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        # Spans leave each process within a tenth of a second (the default waits five).
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        # Every instrumentation, the SQL statements' too (left out by default).
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "",
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
    }


def _is_statement(span: Span) -> bool:
    return any(key.startswith("db.") for key in span.attributes)


def _in_trace(spans: list[Span], trace_id: str) -> list[Span]:
    return [s for s in spans if s.trace_id == trace_id]


def test_one_order_is_one_trace_across_gunicorn_a_relay_and_a_worker(
    processes, settings, smtp_server, customer, staff_api
):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    customer.email = "carol@example.com"
    customer.save(update_fields=["email"])
    created = staff_api.post(
        "/api/v1/products/", {"sku": "BOOK-1", "title": "Dune", "price": "9.99", "stock": 5}, format="json"
    )
    assert created.status_code == 201, created.content
    smtp = f"smtp://127.0.0.1:{smtp_server.port}"

    with OtlpReceiver() as otlp, running(Receiver()) as webhooks:
        endpoint = staff_api.post(
            "/api/v1/webhook-endpoints/", {"url": webhooks.url, "event_types": ["order.confirmed"]}, format="json"
        )
        assert endpoint.status_code == 201, endpoint.content
        env = _tracing_env(otlp)
        processes.worker(concurrency=2, EMAIL_URL=smtp, **env)
        processes.relay(EMAIL_URL=smtp, **env)
        port = free_port()
        gunicorn = [sys.executable, "-m", "gunicorn", "config.wsgi", "-c", "config/gunicorn.conf.py"]
        processes.start(
            "web",
            [*gunicorn, "--bind", f"127.0.0.1:{port}", "--workers", "1"],
            OUTBOX_DISPATCH_ON_COMMIT="false",
            **env,
        )
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_up(f"{url}/healthz"), timeout=60, what="gunicorn")

        placed = requests.post(
            f"{url}/api/v1/orders/",
            json={"items": [{"sku": "BOOK-1", "quantity": 1}], "payment_token": "tok_visa"},
            headers={"Authorization": f"Token {token_issue(user=customer).key}"},
            timeout=30,
        )
        assert placed.status_code == 201, placed.content
        order_id = placed.json()["id"]
        placed_event = StoredEvent.objects.get(type="order.placed", aggregate_id=order_id)
        assert placed_event.traceparent, "the event was stored with the request's trace context"
        trace_id = placed_event.traceparent.split("-")[1]

        def whole_story() -> list[Span]:
            spans = _in_trace(otlp.spans, trace_id)
            names = {s.name for s in spans}
            return spans if set(HANDLERS) <= names and webhooks.received and smtp_server.messages else []

        trace = wait_until(whole_story, timeout=90, what=f"every handler's span in trace {trace_id}")

        def read_in_batches() -> list[Span]:
            """Position readers' batches (the audit trail, projections) linking to the order's events."""
            return [
                s
                for s in otlp.spans
                if s.attributes.get("shelfwise.batch.kind") == "position reader"
                and any(link.trace_id == trace_id for link in s.links)
            ]

        batches = wait_until(read_in_batches, timeout=60, what="a position reader's batch linked to the trace")
    by_id = {s.span_id: s for s in trace}

    # The story, for whoever runs this with -s: each span but SQL statements, its parent, its process.
    for span in (s for s in trace if not _is_statement(s)):
        parent = by_id[span.parent_span_id].name if span.parent_span_id in by_id else "-"
        print(f"{span.resource.get('shelfwise.process'):>18} {span.process[1]:>7}  {span.name}  <- {parent}")
    requests_ = [s for s in trace if s.name.startswith("POST") and s.resource.get("shelfwise.process") == "web"]
    assert requests_, "the request itself is in the trace"

    handler_spans = {s.name: s for s in trace if s.name in HANDLERS}
    for name, event_type in HANDLERS.items():
        span = handler_spans[name]
        assert span.attributes["shelfwise.handler"] == name
        assert span.attributes["shelfwise.event.type"] == event_type
        assert span.attributes["shelfwise.tenant.id"] == str(customer.tenant_id)
        assert span.attributes["shelfwise.order.id"] == order_id

    capture = handler_spans["payments.capture_payment_for_order"]
    task = by_id[capture.parent_span_id]
    assert task.name == "run/domain_events.run_delivery", "the capture runs in its Celery task's span"

    statements = [s for s in trace if s.parent_span_id == capture.span_id and _is_statement(s)]
    assert statements, "psycopg's spans: the capture's SQL statements"

    where = {name: span.resource.get("shelfwise.process") for name, span in handler_spans.items()}
    assert where["inventory.reserve_stock_for_order"] == "run_outbox_relay"
    assert where["payments.capture_payment_for_order"] == "worker"
    # As served, no process runs an in-process handler after its own commit: the capture's worker
    # leaves the confirmation to the relay (OUTBOX_RUN_ON_COMMIT off).
    assert where["orders.confirm_order"] == "run_outbox_relay"
    assert where["webhooks.send_webhook"] == "worker"
    processes_ = {s.process for s in trace}
    assert len(processes_) >= 3, processes_
    assert {s.resource.get("shelfwise.process") for s in trace} >= {"web", "run_outbox_relay", "worker"}

    # A batch is a trace of its own, linked to each of its events, each link naming its event.
    for batch in batches:
        assert batch.trace_id != trace_id
        for link in (link for link in batch.links if link.trace_id == trace_id):
            assert link.attributes["shelfwise.order.id"] == order_id
            assert link.attributes["shelfwise.tenant.id"] == str(customer.tenant_id)
            assert link.attributes["shelfwise.event.type"]

    # What left the processes names the trace: the webhook request (its send span), its CloudEvent
    # (the span that published the event), and the e-mail (the handler that sent it).
    request = webhooks.received[0]
    header = request.headers["traceparent"].split("-")
    assert header[1] == trace_id
    assert header[2] == handler_spans["webhooks.send_webhook"].span_id
    confirmed = StoredEvent.objects.get(type="order.confirmed", aggregate_id=order_id)
    assert request.verified(endpoint.json()["secret"]).get_extension("traceparent") == confirmed.traceparent
    assert confirmed.traceparent.split("-")[2] == handler_spans["orders.confirm_order"].span_id
    mail = smtp_server.messages[0]["traceparent"].split("-")
    assert mail[1] == trace_id
    assert mail[2] == handler_spans["notifications.email_customer_about_order"].span_id
