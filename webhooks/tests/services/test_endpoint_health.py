"""Endpoint health: since when it has been failing, and disabled (staff told) after five days."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from tenants.tests.factories import UserFactory
from webhooks.services import endpoint_update
from webhooks.tests.factories import endpoint_with_secret, publish_confirmed, send_due_now
from webhooks.tests.receiver import Answer, Receiver, running

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _loopback_allowed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    settings.WEBHOOK_RETRY_SCHEDULE = [1]


def test_an_endpoint_failing_for_five_days_is_disabled_and_its_staff_are_told(tenant, staff, mailoutbox):
    staff.email = "sam@store.example"
    staff.save(update_fields=["email"])
    UserFactory(tenant=tenant, username="customer-no-mail", email="cust@example.com")
    with running(Receiver(default=Answer(500))) as receiver:
        endpoint, _ = endpoint_with_secret(tenant=tenant, url=receiver.url)
        publish_confirmed(tenant.pk)
        send_due_now()
        endpoint.refresh_from_db()
        first_failure = endpoint.failing_since
        assert first_failure is not None
        assert endpoint.is_active, "one bad day is not enough"

        with time_machine.travel(timezone.now() + timedelta(days=5, hours=1)):
            publish_confirmed(tenant.pk)
            send_due_now()
    endpoint.refresh_from_db()
    assert not endpoint.is_active
    assert endpoint.failing_since == first_failure
    assert "every delivery failed since" in endpoint.disabled_reason
    assert [m.to for m in mailoutbox] == [["sam@store.example"]], "the tenant's staff, not its customers"
    assert endpoint.url in mailoutbox[0].body

    endpoint_update(endpoint=endpoint, is_active=True)
    endpoint.refresh_from_db()
    assert (endpoint.is_active, endpoint.failing_since, endpoint.disabled_reason) == (True, None, "")


def test_a_success_clears_the_failing_since(tenant):
    with running(Receiver([Answer(500)], default=Answer(200))) as receiver:
        endpoint, _ = endpoint_with_secret(tenant=tenant, url=receiver.url)
        publish_confirmed(tenant.pk)
        send_due_now()
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None
    assert endpoint.is_active


def test_the_api_shows_since_when_an_endpoint_fails_and_why_it_was_disabled(tenant, staff_api):
    with running(Receiver(default=Answer(500))) as receiver:
        endpoint, _ = endpoint_with_secret(tenant=tenant, url=receiver.url)
        publish_confirmed(tenant.pk)
        send_due_now()
    body = staff_api.get(f"/api/v1/webhook-endpoints/{endpoint.pk}/").json()
    assert body["failing_since"] is not None
    assert body["disabled_reason"] == ""
