"""Writes of the notifications module: remembering who ordered, and e-mailing them.

An e-mail is sent at most once per (event, template): the log row is claimed before sending and
marked sent after. The one window for a second copy is a crash after the SMTP server accepted the
message and before the log committed; the message then goes again with the same deterministic
Message-ID, which a receiving server or client can drop as a duplicate.

A worker's batch of e-mails goes over one SMTP connection (`email_connection_shared`, the handler's
batch scope); each message still has its own outcome, and one the server refuses is retried alone.
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.db.models import Subquery
from django.template.loader import render_to_string
from django.utils import timezone

from core import tracing
from core.db import get_or_insert
from core.errors import ApplicationError
from domain_events.events import (
    DomainEvent,
    OrderCancelled,
    OrderConfirmed,
    OrderDelivered,
    OrderFulfilled,
    OrderPlaced,
)
from domain_events.selectors import first_event_of
from notifications.metrics import EMAILS
from notifications.models import EmailMessage, OrderContact
from tenants.models import Tenant, User

logger = logging.getLogger(__name__)

# Event type → template name and subject.
TEMPLATES: dict[str, tuple[str, str]] = {
    OrderConfirmed.type: ("order_confirmed", "Your order {short_id} is confirmed"),
    OrderCancelled.type: ("order_cancelled", "Your order {short_id} was cancelled"),
    OrderFulfilled.type: ("order_fulfilled", "Your order {short_id} has shipped"),
    OrderDelivered.type: ("order_delivered", "Your order {short_id} has been delivered"),
}
REASONS = {
    "out_of_stock": "some of the books were out of stock",
    "payment_declined": "the payment was declined",
    "customer_request": "you asked us to cancel it",
}
MAX_ERROR_LENGTH = 2000


# Refusals of one message that leave the SMTP session usable (the client has reset it): the
# connection goes on serving the rest of the batch.
MESSAGE_REFUSED = (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError)

_shared_connection: ContextVar[BaseEmailBackend | None] = ContextVar("notifications_shared_connection", default=None)


@contextmanager
def email_connection_shared() -> Iterator[None]:
    """Send every e-mail of the block over one connection to the mail server, opened at the first
    message and closed at the end; one that breaks (not a refused message) is opened again."""
    connection = get_connection(timeout=settings.EMAIL_TIMEOUT)
    reset = _shared_connection.set(connection)
    try:
        yield
    finally:
        _shared_connection.reset(reset)
        try:
            connection.close()
        except Exception:
            logger.info("the mail server connection did not close cleanly", exc_info=True)


class OrderContactUnknown(ApplicationError):
    """The order's `order.placed` has not been seen yet; the e-mail is retried later."""


def message_id_for(*, event: DomainEvent, template: str) -> str:
    """The same Message-ID on every attempt, so a duplicate copy can be recognised."""
    return f"<{event.event_id}.{template}@shelfwise>"


def order_contact_record(*, event: OrderPlaced) -> OrderContact:
    """Remember who placed the order and what it holds (idempotent)."""
    contact, _ = get_or_insert(
        OrderContact,
        order_id=event.order_id,
        defaults={
            "tenant_id": event.tenant_id,
            "customer_id": event.customer_id,
            "total_amount": event.total_amount,
            "currency": event.currency,
            "lines": [
                {"sku": line.sku, "title": line.title, "quantity": line.quantity, "unit_price": str(line.unit_price)}
                for line in event.lines
            ],
        },
    )
    return contact


def _contact(event: DomainEvent) -> OrderContact:
    """Who placed the order. Kept by `remember_order_contact`, which may not have run yet: handlers
    keep one aggregate's order each for itself, not among them. Then the order's stored
    `order.placed` tells, and is kept now."""
    contact = OrderContact.objects.filter(order_id=event.order_id).first()
    if contact is not None:
        return contact
    placed = first_event_of(tenant_id=event.tenant_id, aggregate_id=event.order_id, type_name=OrderPlaced.type)
    if not isinstance(placed, OrderPlaced):
        raise OrderContactUnknown(f"order {event.order_id} has not been seen placed yet")
    return order_contact_record(event=placed)


def _customer(event: DomainEvent, contact: OrderContact) -> User | None:
    """The order's customer, with the name of the order's store (`store_name`) in the same query."""
    store = Tenant.objects.filter(pk=event.tenant_id).values("name")[:1]
    return User.objects.filter(pk=contact.customer_id).annotate(store_name=Subquery(store)).first()


def _context(event: DomainEvent, contact: OrderContact, customer: User) -> dict:
    context = {
        "name": customer.first_name or customer.username,
        "store": customer.store_name or "our store",
        "short_id": str(event.order_id)[:8],
        "lines": contact.lines,
        "total": contact.total_amount,
        "currency": contact.currency,
    }
    if isinstance(event, OrderCancelled):
        context["reason"] = REASONS.get(event.reason, event.reason.replace("_", " "))
        context["refunded"] = event.previous_status in ("confirmed", "fulfilled")
    if isinstance(event, OrderFulfilled | OrderDelivered):
        context["tracking_number"] = event.tracking_number
    return context


def order_email_send(*, event: OrderConfirmed | OrderCancelled | OrderFulfilled | OrderDelivered) -> EmailMessage:
    """E-mail the customer about `event` unless that was done already.

    Runs outside any transaction of the executor (it talks to an SMTP server): the log row is
    claimed and updated by short statements of its own. Raises `OrderContactUnknown` when the
    order's placement is not known yet, and lets SMTP errors through after logging them: both are
    retried on the handler's schedule.
    """
    template, subject = TEMPLATES[event.type]
    contact = _contact(event)
    message, _ = get_or_insert(
        EmailMessage,
        event_id=event.event_id,
        template=template,
        defaults={
            "tenant_id": event.tenant_id,
            "event_type": event.type,
            "order_id": event.order_id,
            "message_id": message_id_for(event=event, template=template),
        },
    )
    if message.status in (EmailMessage.Status.SENT, EmailMessage.Status.SKIPPED):
        logger.info("e-mail %s for event %s was %s already", template, event.event_id, message.status)
        return message
    customer = _customer(event, contact)
    if customer is None or not customer.email:
        message.status = EmailMessage.Status.SKIPPED
        message.last_error = "the customer has no e-mail address"
        message.save(update_fields=["status", "last_error", "updated_at"])
        return message

    shared = _shared_connection.get()
    context = _context(event, contact, customer)
    message.recipient = customer.email
    message.subject = subject.format(**context)
    headers = {"Message-ID": message.message_id}
    traceparent = tracing.current_traceparent()
    if traceparent:
        # The handler's span, in the order's trace (`core.tracing`).
        headers["traceparent"] = traceparent
    mail = EmailMultiAlternatives(
        subject=message.subject,
        body=render_to_string(f"notifications/{template}.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[customer.email],
        headers=headers,
        connection=shared or get_connection(timeout=settings.EMAIL_TIMEOUT),
    )
    mail.attach_alternative(render_to_string(f"notifications/{template}.html", context), "text/html")
    message.attempts += 1
    try:
        if shared is not None:
            shared.open()  # kept open across the batch: a send on a connection it did not open leaves it open
        mail.send()
    except Exception as exc:
        if shared is not None and not isinstance(exc, MESSAGE_REFUSED):
            shared.close()  # broken: the next message of the batch opens a new one
        EMAILS.labels(outcome="failed").inc()
        message.status = EmailMessage.Status.FAILED
        message.last_error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_LENGTH]
        message.save(update_fields=["recipient", "subject", "status", "attempts", "last_error", "updated_at"])
        raise
    EMAILS.labels(outcome="sent").inc()
    message.status = EmailMessage.Status.SENT
    message.sent_at = timezone.now()
    message.last_error = ""
    message.save(update_fields=["recipient", "subject", "status", "attempts", "last_error", "sent_at", "updated_at"])
    return message
