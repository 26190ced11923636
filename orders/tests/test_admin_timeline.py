"""The order page shows the order's timeline: its events in position order, each handler's delivery."""

from decimal import Decimal

import pytest
from django.db import transaction
from django.urls import reverse

from domain_events.bus import event_bus
from domain_events.context import acting_as
from domain_events.events import OrderConfirmed
from domain_events.models import Delivery, StoredEvent
from orders.tests.factories import OrderFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_order_page_shows_each_event_with_its_actor_handlers_deliveries_and_errors(staff_admin, tenant, staff):
    order = OrderFactory(tenant=tenant)
    with acting_as(f"staff:{staff.pk}"), transaction.atomic():
        first = event_bus.publish(
            OrderConfirmed(tenant_id=tenant.id, order_id=order.id, total_amount=Decimal("10.00"), currency="USD")
        )
    with transaction.atomic():
        second = event_bus.publish(
            OrderConfirmed(tenant_id=tenant.id, order_id=order.id, total_amount=Decimal("10.00"), currency="USD")
        )
    stuck = Delivery.objects.filter(stored_event__event_id=second.event_id).first()
    Delivery.objects.filter(pk=stuck.pk).update(status="failed", attempts=2, last_error="SMTPRecipientsRefused: boom")

    page = staff_admin.get(reverse("admin:orders_order_change", args=[order.pk])).content.decode()
    assert "event-timeline" in page
    positions = [StoredEvent.objects.get(event_id=e.event_id).position for e in (first, second)]
    timeline = page.split("event-timeline", 1)[1].split("</table>", 1)[0]
    assert timeline.index(f">{positions[0]}</td>") < timeline.index(f">{positions[1]}</td>")
    assert stuck.handler in page
    assert f">staff:{staff.pk}</td>" in timeline, "who caused the first event"
    assert ">system</td>" in timeline, "nobody in particular caused the second"
    assert "SMTPRecipientsRefused: boom" in page
    assert "&lt;" not in timeline, "rendered as HTML, not as escaped text"
