"""`/metrics`: figures move as events flow (scrape, act, scrape again), a dead letter appears and
goes away after a redrive, and the counters of several processes add up."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from decimal import Decimal

import pytest
from django.db import transaction
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from domain_events.bus import event_bus
from domain_events.deadletters import redrive
from domain_events.events import OrderConfirmed, OrderLine, OrderPlaced
from domain_events.models import Delivery
from domain_events.tests.probe.events import ProbeHappened
from domain_events.tests.probe.models import ProbeSwitch
from tenants.tests.factories import UserFactory
from testsupport.database import open_writing_transaction
from testsupport.outbox import run_deliveries_now
from testsupport.processes import ROOT, subprocess_env
from webhooks.tests.factories import endpoint_with_secret, publish_confirmed, send_due_now
from webhooks.tests.receiver import Answer, Receiver, running

pytestmark = pytest.mark.django_db(transaction=True)

Sample = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape() -> Sample:
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }


def value(sample: Sample, name: str, **labels: str) -> float:
    return sample.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(autouse=True)
def _fresh_figures(settings):
    settings.METRICS_CACHE_SECONDS = 0
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}


def publish_probe(n: int) -> ProbeHappened:
    with transaction.atomic():
        return event_bus.publish(ProbeHappened(tenant_id=uuid.uuid4(), probe_id=uuid.uuid4(), n=n))


def test_figures_move_as_events_flow_and_a_dead_letter_comes_and_goes_with_a_redrive():
    before = scrape()
    ProbeSwitch.set("probe.fast:fail")
    publish_probe(1)

    published = scrape()
    assert value(published, "shelfwise_events_published_total", type="probe.happened") == (
        value(before, "shelfwise_events_published_total", type="probe.happened") + 1
    )
    assert value(published, "shelfwise_outbox_backlog") >= value(before, "shelfwise_outbox_backlog") + 1
    assert value(published, "shelfwise_outbox_oldest_open_seconds") >= 0

    for _ in range(4):  # the schedule of three retries, then dead
        run_deliveries_now("probe.fast")
    dead = scrape()
    assert value(dead, "shelfwise_events_head_position") >= 1, "numbered by now"
    assert value(dead, "shelfwise_reader_lag_positions", reader="probe.tracker") >= 1, "no relay ran the reader"
    assert value(dead, "shelfwise_dead_letters", handler="probe.fast") == 1
    failures = value(dead, "shelfwise_deliveries_total", handler="probe.fast", outcome="failed")
    assert failures - value(before, "shelfwise_deliveries_total", handler="probe.fast", outcome="failed") == 3
    dying = value(dead, "shelfwise_deliveries_total", handler="probe.fast", outcome="dead")
    assert dying - value(before, "shelfwise_deliveries_total", handler="probe.fast", outcome="dead") == 1

    ProbeSwitch.objects.all().delete()
    assert redrive(Delivery.objects.filter(handler="probe.fast")) == 1
    run_deliveries_now("probe.fast")
    redriven = scrape()
    assert value(redriven, "shelfwise_dead_letters", handler="probe.fast") == 0, "the series stays, at 0"
    succeeded = value(redriven, "shelfwise_deliveries_total", handler="probe.fast", outcome="succeeded")
    assert succeeded - value(dead, "shelfwise_deliveries_total", handler="probe.fast", outcome="succeeded") == 1


def test_the_age_of_the_oldest_open_writing_transaction_is_a_gauge():
    """It holds every position reader back while it is open (domain_events/head.py)."""
    assert value(scrape(), "shelfwise_oldest_writing_transaction_seconds") == 0
    with open_writing_transaction():
        time.sleep(0.05)  # an age to see: the gauge counts from the transaction's start
        assert value(scrape(), "shelfwise_oldest_writing_transaction_seconds") > 0


def test_requests_are_timed_by_view_not_by_path(api_client_for, customer):
    api = api_client_for(customer)
    before = scrape()
    for _ in range(3):
        assert api.get(f"/api/v1/orders/{uuid.uuid4()}/").status_code == 404
    after = scrape()
    labels = {"view": "order-detail", "method": "GET", "status": "4xx"}
    count = "shelfwise_http_request_seconds_count"
    assert value(after, count, **labels) - value(before, count, **labels) == 3
    assert not any("orders/" in dict(key).get("view", "") for _, key in after), "no path, no id in a label"


def test_webhook_requests_by_endpoint_and_outcome_and_emails_sent(tenant, settings, smtp_server):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    settings.WEBHOOK_RETRY_SCHEDULE = [1, 1]
    before = scrape()
    with running(Receiver([Answer(503)])) as receiver:
        endpoint, _ = endpoint_with_secret(tenant=tenant, url=receiver.url)
        publish_confirmed(tenant.pk)
        run_deliveries_now("webhooks.queue_webhook_deliveries")
        send_due_now()
    after = scrape()
    count = "shelfwise_webhook_request_seconds_count"
    for outcome in ("5xx", "2xx"):
        labels = {"endpoint": str(endpoint.pk), "outcome": outcome}
        assert value(after, count, **labels) - value(before, count, **labels) == 1

    customer = UserFactory(tenant=tenant, username="mia", email="mia@example.com")
    order_id = uuid.uuid4()
    lines = (OrderLine(sku="1", title="Dune", quantity=1, unit_price=Decimal("9.99")),)
    with transaction.atomic():
        event_bus.publish(
            OrderPlaced(
                tenant_id=tenant.id,
                order_id=order_id,
                customer_id=customer.id,
                lines=lines,
                total_amount=Decimal("9.99"),
                currency="USD",
                payment_token="tok_visa",
            )
        )
    run_deliveries_now("notifications.remember_order_contact")
    with transaction.atomic():
        event_bus.publish(
            OrderConfirmed(tenant_id=tenant.id, order_id=order_id, total_amount=Decimal("9.99"), currency="USD")
        )
    run_deliveries_now("notifications.email_customer_about_order")
    assert len(smtp_server.messages) == 1
    sent = scrape()
    emails = "shelfwise_emails_total"
    assert value(sent, emails, outcome="sent") - value(after, emails, outcome="sent") == 1


def test_with_a_shared_folder_the_counters_of_several_processes_add_up(tmp_path, settings, redis_broker):
    folder = tmp_path / "prometheus"
    folder.mkdir()
    settings.PROMETHEUS_MULTIPROC_DIR = str(folder)
    for batch in (2, 3):  # a relay process for each batch, each writing its own counters
        for n in range(batch):
            publish_probe(n)
        relay = subprocess.run(
            [sys.executable, "manage.py", "run_outbox_relay", "--once"],
            cwd=ROOT,
            env=subprocess_env(PROMETHEUS_MULTIPROC_DIR=str(folder)),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert relay.returncode == 0, relay.stderr
    redis_broker.flushdb()  # the celery-mode probe's messages, sent by the relays
    assert len(list(folder.glob("counter_*.db"))) >= 2, "one file per process"
    sample = scrape()
    assert value(sample, "shelfwise_deliveries_total", handler="probe.fast", outcome="succeeded") == 5
