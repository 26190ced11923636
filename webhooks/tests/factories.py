"""Factories and helpers for the webhook tests: endpoints, published events, an in-process sender."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import factory
from django.db import transaction
from django.utils import timezone

from domain_events.bus import event_bus
from domain_events.events import OrderConfirmed
from tenants.tests.factories import TenantFactory
from webhooks import services
from webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookSecret
from webhooks.services import endpoints


class WebhookEndpointFactory(factory.django.DjangoModelFactory):
    """An endpoint written directly, past the URL checks of registration (as if it had changed since)."""

    class Meta:
        model = WebhookEndpoint

    tenant = factory.SubFactory(TenantFactory)
    url = "https://erp.example.com/hooks"
    event_types = factory.LazyFunction(list)


def endpoint_with_secret(**kwargs) -> tuple[WebhookEndpoint, str]:
    endpoint = WebhookEndpointFactory(**kwargs)
    return endpoint, WebhookSecret.objects.create(endpoint=endpoint, secret=endpoints._new_secret()).secret


def publish_confirmed(tenant_id: UUID, order_id: UUID | None = None) -> OrderConfirmed:
    """Publish (and commit) an `order.confirmed`; its webhook deliveries are fanned out after commit."""
    event = OrderConfirmed(
        tenant_id=tenant_id, order_id=order_id or uuid4(), total_amount=Decimal("9.99"), currency="USD"
    )
    with transaction.atomic():
        return event_bus.publish(event)


def send_due_now(*, rounds: int = 30) -> None:
    """Send every open delivery here, as workers would, with each retry made due at once."""
    for _ in range(rounds):
        open_ = WebhookDelivery.objects.filter(status__in=WebhookDelivery.OPEN)
        if not open_.exists():
            return
        open_.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
        for delivery_id in open_.order_by("position").values_list("pk", flat=True):
            services.delivery_send(delivery_id=delivery_id)
