"""E-mails to customers through a real SMTP server: one per (event, template), whatever happens."""

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import transaction

from domain_events.bus import event_bus
from domain_events.events import OrderCancelled, OrderConfirmed, OrderFulfilled, OrderLine, OrderPlaced
from notifications.models import EmailMessage, OrderContact
from tenants.tests.factories import UserFactory
from testsupport.outbox import run_deliveries_now

pytestmark = pytest.mark.django_db(transaction=True)

EMAIL = "notifications.email_customer_about_order"
LINES = (OrderLine(sku="BOOK-DUNE", title="Dune", quantity=2, unit_price=Decimal("9.99")),)
AMOUNTS = {"lines": LINES, "total_amount": Decimal("19.98"), "currency": "USD"}


def confirmed(tenant, order_id) -> OrderConfirmed:
    return OrderConfirmed(tenant_id=tenant.id, order_id=order_id, total_amount=Decimal("19.98"), currency="USD")


def place(tenant, customer) -> uuid.UUID:
    order_id = uuid.uuid4()
    with transaction.atomic():
        event_bus.publish(
            OrderPlaced(
                tenant_id=tenant.id,
                order_id=order_id,
                customer_id=customer.id,
                lines=LINES,
                total_amount=Decimal("19.98"),
                currency="USD",
                payment_token="tok_visa",
            )
        )
    return order_id


def publish(event):
    with transaction.atomic():
        return event_bus.publish(event)


def deliver_emails():
    return run_deliveries_now(EMAIL)


def text_of(message) -> str:
    return message.get_payload()[0].get_payload(decode=True).decode()


def html_of(message) -> str:
    return message.get_payload()[1].get_payload(decode=True).decode()


def test_a_confirmed_order_gives_exactly_one_message_with_its_lines(tenant, smtp_server):
    customer = UserFactory(tenant=tenant, email="carol@example.com", first_name="Carol")
    order_id = place(tenant, customer)
    event = publish(
        OrderConfirmed(tenant_id=tenant.id, order_id=order_id, total_amount=Decimal("19.98"), currency="USD")
    )
    assert deliver_emails().succeeded == 1
    deliver_emails()  # a redelivery sends nothing more
    assert len(smtp_server.messages) == 1
    message = smtp_server.messages[0]
    assert message["To"] == "carol@example.com"
    assert message["Subject"] == f"Your order {str(order_id)[:8]} is confirmed"
    assert message["Message-ID"] == f"<{event.event_id}.order_confirmed@shelfwise>"
    assert "Hello Carol" in text_of(message)
    assert f"your order {str(order_id)[:8]} at {tenant.name} is confirmed" in text_of(message)
    assert "2 \N{MULTIPLICATION SIGN} Dune (BOOK-DUNE)" in text_of(message)
    assert "Total: 19.98 USD" in text_of(message)
    assert "<strong>Total: 19.98 USD</strong>" in html_of(message)
    logged = EmailMessage.objects.get(event_id=event.event_id)
    assert logged.status == "sent"
    assert logged.attempts == 1
    assert logged.recipient == "carol@example.com"


def test_a_server_that_refuses_twice_then_accepts_still_gives_one_message(tenant, smtp_server):
    customer = UserFactory(tenant=tenant, email="carol@example.com")
    order_id = place(tenant, customer)
    publish(confirmed(tenant, order_id))
    smtp_server.refuse = 2
    assert deliver_emails().failed == 1
    failed = EmailMessage.objects.get(order_id=order_id)
    assert failed.status == "failed"
    assert "451" in failed.last_error
    assert deliver_emails().failed == 1
    assert deliver_emails().succeeded == 1
    assert len(smtp_server.messages) == 1
    sent = EmailMessage.objects.get(order_id=order_id)
    assert sent.status == "sent"
    assert sent.attempts == 3


def test_cancellation_says_why_and_shipping_gives_the_tracking_number(tenant, smtp_server):
    customer = UserFactory(tenant=tenant, email="carol@example.com")
    order_id = place(tenant, customer)
    publish(
        OrderCancelled(
            tenant_id=tenant.id,
            order_id=order_id,
            reason="out_of_stock",
            previous_status="placed",
            lines=LINES,
            total_amount=Decimal("19.98"),
            currency="USD",
        )
    )
    other = place(tenant, customer)
    publish(
        OrderFulfilled(
            tenant_id=tenant.id,
            order_id=other,
            tracking_number="1Z999AA10123456784",
            shipped_at=datetime(2026, 12, 1, 10, tzinfo=UTC),
            lines=LINES,
        )
    )
    deliver_emails()
    by_subject = {m["Subject"]: text_of(m) for m in smtp_server.messages}
    cancelled = by_subject[f"Your order {str(order_id)[:8]} was cancelled"]
    assert "some of the books were out of stock" in cancelled
    assert "You have not been charged" in cancelled
    assert "1Z999AA10123456784" in by_subject[f"Your order {str(other)[:8]} has shipped"]


def test_a_customer_without_an_address_is_skipped_not_retried(tenant, smtp_server):
    customer = UserFactory(tenant=tenant, email="")
    order_id = place(tenant, customer)
    publish(confirmed(tenant, order_id))
    assert deliver_emails().succeeded == 1
    assert smtp_server.messages == []
    assert EmailMessage.objects.get(order_id=order_id).status == "skipped"


def test_an_email_before_the_contact_was_kept_reads_the_stored_order_placed(tenant, smtp_server):
    """`remember_order_contact` may not have run yet when the e-mail's delivery does (a relay behind,
    a worker ahead): the e-mail does not fail and wait for it, it reads the order's stored placement."""
    customer = UserFactory(tenant=tenant, email="dora@example.com", first_name="Dora")
    order_id = place(tenant, customer)
    OrderContact.objects.filter(order_id=order_id).delete()
    publish(
        OrderCancelled(
            tenant_id=tenant.id, order_id=order_id, reason="customer_request", previous_status="placed", **AMOUNTS
        )
    )
    assert deliver_emails().succeeded == 1
    assert [m["To"] for m in smtp_server.messages] == ["dora@example.com"]
    assert "Hello Dora" in text_of(smtp_server.messages[0])
    assert "you asked us to cancel it" in text_of(smtp_server.messages[0])
    assert OrderContact.objects.get(order_id=order_id).customer_id == customer.id


def test_an_email_for_an_order_never_placed_here_still_waits(tenant, smtp_server):
    publish(
        OrderCancelled(
            tenant_id=tenant.id, order_id=uuid.uuid4(), reason="customer_request", previous_status="placed", **AMOUNTS
        )
    )
    result = deliver_emails()
    assert result.failed == 1
    assert smtp_server.messages == []
