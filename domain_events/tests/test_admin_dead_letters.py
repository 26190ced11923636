"""Dead letters from the staff's side: counted on the dashboard, linked to what they concern, and
redriven one at a time from an aggregate's timeline."""

import re
import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.urls import reverse

from domain_events.bus import event_bus
from domain_events.models import Delivery
from domain_events.tests.probe.events import ProbeHappened
from domain_events.tests.probe.models import ProbeSwitch
from tenants.tests.factories import UserFactory
from testsupport.database import open_writing_transaction

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def dead_letter(tenant, settings) -> Delivery:
    settings.HANDLER_RETRY_SCHEDULE = []
    ProbeSwitch.set("probe.fast:fail")
    with transaction.atomic():
        event = event_bus.publish(ProbeHappened(tenant_id=tenant.id, probe_id=uuid.uuid4(), n=1))
    ProbeSwitch.objects.all().delete()
    dead = Delivery.objects.get(stored_event__event_id=event.event_id, handler="probe.fast")
    assert dead.status == Delivery.Status.DEAD
    return dead


def test_the_dashboard_counts_the_bookstores_dead_letters_and_links_their_list(staff_admin, dead_letter):
    page = staff_admin.get("/admin/").content.decode()
    panel = page.split('id="handler-trouble"', 1)[1].split("</section>", 1)[0]
    assert 'href="/admin/domain_events/delivery/?status__exact=dead"' in panel
    assert '<li class="alert"><span><a href="/admin/domain_events/delivery/?status__exact=dead"' in panel


def test_another_bookstores_dead_letters_are_not_counted(client, other_tenant, dead_letter):
    client.force_login(UserFactory(tenant=other_tenant, is_staff=True))
    panel = client.get("/admin/").content.decode().split('id="handler-trouble"', 1)[1].split("</section>", 1)[0]
    assert 'class="alert"' not in panel


def test_one_dead_letter_is_redriven_and_the_page_it_came_from_opens_again(staff_admin, dead_letter):
    url = reverse("admin:domain_events_delivery_redrive", args=[dead_letter.pk])
    assert staff_admin.get(url).status_code == 405

    response = staff_admin.post(url, {"next": "/admin/orders/order/"})

    assert response.status_code == 302
    assert response["Location"] == "/admin/orders/order/"
    dead_letter.refresh_from_db()
    assert dead_letter.status == Delivery.Status.SUCCEEDED


def test_a_delivery_that_is_not_dead_is_left_alone_and_a_foreign_next_is_ignored(staff_admin, dead_letter):
    Delivery.objects.filter(pk=dead_letter.pk).update(status=Delivery.Status.SKIPPED)
    response = staff_admin.post(
        reverse("admin:domain_events_delivery_redrive", args=[dead_letter.pk]),
        {"next": "https://elsewhere.example/"},
        follow=True,
    )
    assert "not dead: nothing to redrive" in response.content.decode()
    assert response.redirect_chain[0][0] == reverse("admin:domain_events_delivery_change", args=[dead_letter.pk])
    dead_letter.refresh_from_db()
    assert dead_letter.status == Delivery.Status.SKIPPED


def test_another_bookstores_dead_letter_cannot_be_redriven(client, other_tenant, dead_letter):
    client.force_login(UserFactory(tenant=other_tenant, is_staff=True))
    response = client.post(reverse("admin:domain_events_delivery_redrive", args=[dead_letter.pk]))
    assert response.status_code == 404
    dead_letter.refresh_from_db()
    assert dead_letter.status == Delivery.Status.DEAD


def test_the_dashboard_shows_the_open_writing_transaction_that_holds_the_readers_back(staff_admin, settings):
    """Every position reader waits for the oldest open writing transaction: staff see its age, and
    it is flagged once it has held them longer than `READER_HELD_WARNING`."""
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "READER_HELD_WARNING": timedelta(0)}

    def fact() -> str:
        panel = staff_admin.get("/admin/").content.decode().split('id="handler-trouble"', 1)[1]
        return panel.split("Oldest open writing transaction", 1)[1].split("</li>", 1)[0]

    assert "none" in fact()
    with open_writing_transaction():
        held = fact()
        assert re.search(r"\d+ s", held)
        assert "none" not in held
        page = staff_admin.get("/admin/").content.decode()
        assert '<li class="alert"><span>Oldest open writing transaction' in page
