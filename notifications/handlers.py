"""Reactions to order events: thin, each calls one service.

E-mail talks to an SMTP server, so it runs in Celery workers (queue `email`), outside the
executor's transaction (`atomic=False`): no row lock is held while the server answers.
"""

from __future__ import annotations

from domain_events.events import OrderCancelled, OrderConfirmed, OrderDelivered, OrderFulfilled, OrderPlaced
from notifications import services


def remember_order_contact(event: OrderPlaced) -> None:
    """Keep who placed the order, to write to them later."""
    services.order_contact_record(event=event)


def email_customer_about_order(event: OrderConfirmed | OrderCancelled | OrderFulfilled | OrderDelivered) -> None:
    """Tell the customer their order was confirmed, cancelled (and why), shipped or delivered."""
    services.order_email_send(event=event)
