"""The read side over HTTP: dashboard, events feed (pagination, 400s, isolation), order timeline."""

import json
import uuid
from datetime import UTC, datetime

import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from analytics.tests.helpers import OrderStory, line, project
from domain_events.context import acting_as
from domain_events.models import Delivery, StoredEvent

pytestmark = pytest.mark.django_db

DASHBOARD = "/api/v1/dashboard/"
EVENTS = "/api/v1/events/"
AT = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)


def test_the_dashboard_is_for_staff_and_gives_money_as_strings(tenant, staff_api, customer_api):
    OrderStory(tenant, line("BOOK-1", 2, "12.50")).placed().confirmed()
    project()
    assert customer_api.get(DASHBOARD).status_code == 403
    body = staff_api.get(DASHBOARD).json()
    assert body["orders_this_month"] == 1
    assert body["revenue_this_month"] == "25.00"
    assert body["average_order_value"] == "25.00"
    assert body["top_products"] == [{"sku": "BOOK-1", "title": "Title of BOOK-1", "units": 2, "revenue": "25.00"}]
    assert body["daily_revenue"][0]["revenue"] == "25.00"
    assert body["position"] == StoredEvent.objects.latest("position").position
    assert set(body) == {
        "orders_this_month",
        "revenue_this_month",
        "pending_fulfillment",
        "cancelled_this_month",
        "average_order_value",
        "top_products",
        "daily_revenue",
        "updated_at",
        "position",
    }


def test_the_events_feed_pages_by_position_without_missing_or_repeating(tenant, other_tenant, staff_api):
    for _ in range(3):
        OrderStory(tenant).placed().confirmed()
    OrderStory(other_tenant).placed()
    project()
    mine = list(StoredEvent.objects.filter(tenant_id=tenant.id).order_by("position").values_list("position", flat=True))

    seen, url = [], f"{EVENTS}?limit=4"
    while url:
        page = staff_api.get(url).json()
        seen += [e["position"] for e in page["results"]]
        url = page["next"]
    assert seen == mine, "every event of the tenant once, in order; none of the other tenant's"

    first = staff_api.get(f"{EVENTS}?limit=4").json()
    assert first["count"] == len(mine)
    assert first["previous"] is None
    after = staff_api.get(f"{EVENTS}?after={mine[-1]}").json()
    assert (after["count"], after["results"], after["next"]) == (0, [], None)


def test_each_feed_entry_is_a_cloudevent_with_its_sequence_and_actor(tenant, staff_api, customer):
    with acting_as(f"customer:{customer.pk}"):
        story = OrderStory(tenant).placed()
    project()
    [entry] = staff_api.get(EVENTS).json()["results"]
    parsed = JSONFormat().read(CloudEvent, json.dumps(entry).encode())
    assert parsed.get_type() == "order.placed"
    assert parsed.get_subject() == str(story.order_id)
    assert parsed.get_extension("sequence") == f"{entry['position']:020d}"
    assert parsed.get_extension("actor") == f"customer:{customer.pk}"
    assert "payment_token" not in parsed.get_data()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("after=-1", "after"),
        ("after=abc", "after"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=x", "limit"),
    ],
)
def test_a_bad_after_or_limit_is_a_400_naming_the_field(staff_api, query, field):
    response = staff_api.get(f"{EVENTS}?{query}")
    assert response.status_code == 400
    assert field in response.json()


def test_the_feed_is_for_staff(customer_api):
    assert customer_api.get(EVENTS).status_code == 403


def test_an_orders_timeline_lists_its_events_with_their_actors_and_deliveries(tenant, staff_api, customer):
    with acting_as(f"customer:{customer.pk}"):
        story = OrderStory(tenant).placed()
    story.confirmed()
    project()
    body = staff_api.get(f"/api/v1/orders/{story.order_id}/events/").json()
    events = body["results"]
    assert [e["type"] for e in events] == ["order.placed", "order.confirmed"]
    assert events[0]["position"] < events[1]["position"]
    assert set(events[0]) == {
        "position",
        "id",
        "type",
        "occurred_at",
        "correlation_id",
        "causation_id",
        "actor",
        "deliveries",
    }
    assert [e["actor"] for e in events] == [f"customer:{customer.pk}", "system"]
    handlers = {d["handler"] for d in events[0]["deliveries"]}
    assert "inventory.reserve_stock_for_order" in handlers
    delivery = events[0]["deliveries"][0]
    assert set(delivery) == {"handler", "status", "attempts", "last_error", "next_attempt_at"}
    assert Delivery.objects.filter(stored_event__event_id=events[0]["id"]).count() == len(events[0]["deliveries"])


def test_another_tenants_order_timeline_is_a_404(other_tenant, staff_api):
    story = OrderStory(other_tenant).placed()
    project()
    assert staff_api.get(f"/api/v1/orders/{story.order_id}/events/").status_code == 404
    assert staff_api.get(f"/api/v1/orders/{uuid.uuid4()}/events/").status_code == 404
