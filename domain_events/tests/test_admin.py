"""The admin for stored events and deliveries: scoped to the staff member's tenant, redrive works."""

import uuid

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from domain_events.admin_lists import COUNT_CAP, LargeTablePaginator, estimated_rows
from domain_events.bus import event_bus
from domain_events.models import Delivery, StoredEvent
from domain_events.tests.probe.events import ProbeHappened
from domain_events.tests.probe.models import ProbeRecord, ProbeSwitch

pytestmark = pytest.mark.django_db(transaction=True)


def publish_for(tenant) -> ProbeHappened:
    with transaction.atomic():
        return event_bus.publish(ProbeHappened(tenant_id=tenant.id, probe_id=uuid.uuid4(), n=1))


def test_staff_see_only_their_tenants_events(staff_admin, tenant, other_tenant):
    mine, theirs = publish_for(tenant), publish_for(other_tenant)
    page = staff_admin.get("/admin/domain_events/storedevent/")
    assert page.status_code == 200
    assert str(mine.probe_id) in page.content.decode()
    assert str(theirs.probe_id) not in page.content.decode()
    other_pk = StoredEvent.objects.get(event_id=theirs.event_id).pk
    response = staff_admin.get(f"/admin/domain_events/storedevent/{other_pk}/change/")
    assert response.status_code in (302, 404)


def test_an_event_page_shows_the_payload_as_pretty_json(staff_admin, tenant):
    event = publish_for(tenant)
    stored = StoredEvent.objects.get(event_id=event.event_id)
    page = staff_admin.get(f"/admin/domain_events/storedevent/{stored.pk}/change/").content.decode()
    assert "<pre" in page
    assert f"&quot;probe_id&quot;: &quot;{event.probe_id}&quot;" in page


def test_deliveries_filter_by_status_and_staff_can_redrive_dead_ones(staff_admin, tenant, settings):
    settings.HANDLER_RETRY_SCHEDULE = []
    ProbeSwitch.set("probe.fast:fail")
    event = publish_for(tenant)
    dead = Delivery.objects.get(stored_event__event_id=event.event_id, handler="probe.fast")
    assert dead.status == Delivery.Status.DEAD

    listing = staff_admin.get("/admin/domain_events/delivery/", {"status__exact": "dead"}).content.decode()
    assert f"/admin/domain_events/delivery/{dead.pk}/change/" in listing
    assert "told to fail" in listing

    ProbeSwitch.objects.all().delete()
    response = staff_admin.post(
        "/admin/domain_events/delivery/", {"action": "redrive_selected", "_selected_action": [dead.pk]}, follow=True
    )
    assert response.status_code == 200
    assert "Re-queued 1 dead deliveries" in response.content.decode()
    dead.refresh_from_db()
    assert dead.status == Delivery.Status.SUCCEEDED
    assert ProbeRecord.objects.filter(event_id=event.event_id, handler="probe.fast").count() == 1


def test_a_customer_cannot_open_the_admin(client, customer):
    client.force_login(customer)
    assert client.get("/admin/domain_events/delivery/").status_code == 302


def test_a_superuser_sees_every_tenant(operator_admin, tenant, other_tenant):
    publish_for(tenant), publish_for(other_tenant)
    page = operator_admin.get("/admin/domain_events/storedevent/").content.decode()
    assert page.count("probe.happened") >= 2


LISTS = ["/admin/domain_events/storedevent/", "/admin/domain_events/delivery/"]
FILTERS = [
    ("/admin/domain_events/storedevent/", {"type__exact": "probe.happened"}),
    ("/admin/domain_events/delivery/", {"handler__exact": "probe.fast"}),
    ("/admin/domain_events/delivery/", {"event_type__exact": "probe.happened"}),
    ("/admin/domain_events/delivery/", {"status__exact": "dead"}),
    ("/admin/domain_events/delivery/", {"held": "waiting"}),
]


def queries_of(client, url, params=None) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url, params or {}).status_code == 200
    return [q["sql"] for q in captured.captured_queries]


@pytest.mark.parametrize("who", ["operator_admin", "staff_admin"])
def test_the_big_lists_never_count_or_scan_a_whole_table(request, who, tenant, other_tenant):
    """No SELECT DISTINCT for filter choices; a count stops at the cap (or reads the statistics)."""
    client = request.getfixturevalue(who)
    publish_for(tenant), publish_for(other_tenant)
    for url, params in [(url, {}) for url in LISTS] + FILTERS:
        for sql in queries_of(client, url, params):
            assert "DISTINCT" not in sql.upper(), sql
            if "COUNT(" in sql.upper():
                assert f"LIMIT {COUNT_CAP + 1}" in sql, sql


def test_the_filters_offer_what_the_code_and_the_tenants_table_know(operator_admin, tenant, other_tenant):
    page = operator_admin.get("/admin/domain_events/delivery/").content.decode()
    assert "?handler__exact=probe.followed" in page  # subscribed, never delivered
    assert "?event_type__exact=probe.measured" in page  # registered, never published
    assert f"?tenant_id__exact={other_tenant.id}" in page


def test_staff_get_no_tenant_filter(staff_admin, tenant, other_tenant):
    page = staff_admin.get("/admin/domain_events/storedevent/").content.decode()
    assert "tenant_id__exact" not in page


def test_search_by_aggregate_finds_the_events_and_their_deliveries(operator_admin, tenant):
    event, other = publish_for(tenant), publish_for(tenant)
    events = operator_admin.get("/admin/domain_events/storedevent/", {"q": str(event.probe_id)}).content.decode()
    assert str(event.probe_id) in events
    assert str(other.probe_id) not in events
    stored = StoredEvent.objects.get(event_id=event.event_id)
    deliveries = operator_admin.get("/admin/domain_events/delivery/", {"q": str(event.probe_id)}).content.decode()
    for delivery in stored.deliveries.all():
        assert f"/admin/domain_events/delivery/{delivery.pk}/change/" in deliveries
    other_delivery = Delivery.objects.filter(stored_event__event_id=other.event_id).first()
    assert f"/admin/domain_events/delivery/{other_delivery.pk}/change/" not in deliveries


def test_search_by_part_of_a_handler_name(operator_admin, tenant):
    publish_for(tenant)
    fast = Delivery.objects.get(handler="probe.fast")
    other = Delivery.objects.get(handler="probe.other")
    page = operator_admin.get("/admin/domain_events/delivery/", {"q": "FAST"}).content.decode()
    assert f"/delivery/{fast.pk}/change/" in page
    assert f"/delivery/{other.pk}/change/" not in page


def test_the_paginator_counts_filtered_rows_only_up_to_the_cap_and_pages_past_the_end_are_empty(tenant):
    for _ in range(3):
        publish_for(tenant)
    events = LargeTablePaginator(StoredEvent.objects.filter(tenant_id=tenant.id).order_by("-position"), 2)
    assert events.count == 3
    assert len(events.page(2).object_list) == 1
    assert list(events.page(40).object_list) == []
    deliveries = Delivery.objects.filter(tenant_id=tenant.id).order_by("-id")
    assert LargeTablePaginator(deliveries, 100).count == deliveries.count()


def test_an_unfiltered_list_takes_its_size_from_the_statistics(operator_admin, tenant, monkeypatch):
    monkeypatch.setattr("domain_events.admin_lists.estimated_rows", lambda queryset: 2_000_000)
    publish_for(tenant)
    with CaptureQueriesContext(connection) as captured:
        page = operator_admin.get("/admin/domain_events/delivery/").content.decode()
    assert not [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"].upper()]
    assert "2000000 deliveries" in page


def test_the_estimate_is_the_planners_row_count(tenant):
    publish_for(tenant), publish_for(tenant)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE domain_events_storedevent")
    assert estimated_rows(StoredEvent.objects.all()) == StoredEvent.objects.count()


def test_the_deliveries_list_reads_the_deliveries_alone(staff_admin, tenant):
    """A page of deliveries never joins their events: the list shows the deliveries' own columns,
    and the join, on the event's id alone, reached every month's partition for each row of the offset
    (3 s for page 50 of a tenant at a million events)."""
    publish_for(tenant)
    with CaptureQueriesContext(connection) as captured:
        page = staff_admin.get("/admin/domain_events/delivery/", {"p": 1})
    assert page.status_code == 200
    assert "probe.happened" in page.content.decode()
    statements = [q["sql"] for q in captured.captured_queries]
    listing = [sql for sql in statements if "ORDER BY" in sql and "domain_events_delivery" in sql]
    assert listing
    assert not [sql for sql in listing if "domain_events_storedevent" in sql]
