"""A batch of e-mails goes to the mail server over one SMTP connection, with a real worker and a
real SMTP server; a message the server refuses fails and is retried alone."""

import uuid
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from domain_events.bus import event_bus
from domain_events.celery_claims import claim_for_workers
from domain_events.events import OrderConfirmed, OrderLine, OrderPlaced
from domain_events.handoff import send_to_celery
from domain_events.models import Delivery
from domain_events.subscriptions import subscriptions
from notifications.models import EmailMessage
from tenants.tests.factories import UserFactory
from testsupport.outbox import run_deliveries_now
from testsupport.processes import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

EMAIL = "notifications.email_customer_about_order"
LINES = (OrderLine(sku="BOOK-DUNE", title="Dune", quantity=1, unit_price=Decimal("9.99")),)
REFUSED = "dave@refused.example"


def placed_order(customer) -> uuid.UUID:
    """An order placed by `customer`; the notifications module remembers whom to write to."""
    order_id = uuid.uuid4()
    with transaction.atomic():
        event_bus.publish(
            OrderPlaced(
                tenant_id=customer.tenant_id,
                order_id=order_id,
                customer_id=customer.id,
                lines=LINES,
                total_amount=Decimal("9.99"),
                currency="USD",
                payment_token="tok_visa",
            )
        )
    return order_id


def claim_and_send() -> list[int]:
    """What a relay does with a backlog of e-mails: claim them and send them, as one task."""
    subscription = subscriptions.get(EMAIL)
    claims, _ = claim_for_workers(100, [subscription])
    assert send_to_celery([(c, subscription) for c in claims], by_relay=True) == len(claims)
    return [c.delivery_id for c in claims]


def test_a_batch_of_emails_uses_one_connection_and_a_refused_one_retries_alone(
    processes, smtp_server, tenant, settings
):
    carol = UserFactory(tenant=tenant, username="carol", email="carol@example.com")
    dave = UserFactory(tenant=tenant, username="dave", email=REFUSED)
    # Only recorded: this test runs what it needs by hand and plays the relay for the e-mails.
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
    orders = [placed_order(carol), placed_order(dave), placed_order(carol)]
    run_deliveries_now("notifications.remember_order_contact")
    for order_id in orders:
        with transaction.atomic():
            event_bus.publish(
                OrderConfirmed(tenant_id=tenant.id, order_id=order_id, total_amount=Decimal("9.99"), currency="USD")
            )
    smtp_server.refused_recipients = {REFUSED}
    smtp = f"smtp://127.0.0.1:{smtp_server.port}"
    processes.worker("email", concurrency=1, EMAIL_URL=smtp, HANDLER_RETRY_SCHEDULE="300,300")
    deliveries = Delivery.objects.filter(handler=EMAIL, aggregate_id__in=orders)

    assert len(claim_and_send()) == 3
    wait_until(lambda: not deliveries.filter(attempts=0).exists(), timeout=30, what="the three e-mails' outcomes")

    by_order = {d.aggregate_id: d for d in deliveries}
    assert [by_order[o].status for o in orders] == ["succeeded", "failed", "succeeded"]
    refused = by_order[orders[1]]
    assert refused.attempts == 1
    assert "SMTPRecipientsRefused" in refused.last_error
    assert refused.next_attempt_at > timezone.now()
    assert smtp_server.connections == 1, "the batch's e-mails went over one connection"
    assert sorted(m["To"] for m in smtp_server.messages) == ["carol@example.com", "carol@example.com"]

    # The refused one alone is sent again when its attempt comes.
    smtp_server.refused_recipients = set()
    deliveries.filter(pk=refused.pk).update(next_attempt_at=timezone.now())
    assert claim_and_send() == [refused.pk]
    wait_until(
        lambda: deliveries.filter(pk=refused.pk, status="succeeded").exists(), timeout=30, what="the refused e-mail"
    )
    assert smtp_server.connections == 2
    assert sorted(m["To"] for m in smtp_server.messages) == ["carol@example.com", "carol@example.com", REFUSED]
    assert len({m["Message-ID"] for m in smtp_server.messages}) == 3
    assert set(deliveries.exclude(pk=refused.pk).values_list("attempts", flat=True)) == {1}
    assert deliveries.get(pk=refused.pk).attempts == 2
    sent = EmailMessage.objects.filter(order_id__in=orders)
    assert sent.count() == 3
    assert set(sent.values_list("status", flat=True)) == {EmailMessage.Status.SENT}
