"""The admin for stored events and deliveries: scoped to the staff member's tenant, redrive works."""

import uuid

import pytest
from django.db import transaction

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
