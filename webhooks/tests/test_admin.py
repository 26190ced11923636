"""The webhooks admin: the tenant's endpoints with their health, never a secret; deliveries with
their attempts; redeliver, enable and disable."""

import re

import pytest

from testsupport.admin_lists import assert_no_whole_table_reads, list_queries, plan_without_sorting, rows_query
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.tests.factories import WebhookEndpointFactory, endpoint_with_secret, publish_confirmed, send_due_now
from webhooks.tests.receiver import Answer, Receiver, running

pytestmark = pytest.mark.django_db(transaction=True)
CHANGELIST = "/admin/webhooks/webhookdelivery/"


def test_staff_see_their_endpoints_health_and_attempts_but_never_a_secret(staff_admin, tenant, other_tenant, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    settings.WEBHOOK_RETRY_SCHEDULE = [1]
    with running(Receiver([Answer(500)], default=Answer(204))) as receiver:
        endpoint, secret = endpoint_with_secret(tenant=tenant, url=receiver.url)
        theirs, _ = endpoint_with_secret(tenant=other_tenant, url="https://erp.other.example/hooks")
        publish_confirmed(tenant.pk)
        send_due_now()

    page = staff_admin.get("/admin/webhooks/webhookendpoint/").content.decode()
    assert receiver.url in page
    assert "1 ok · 0 retrying · 0 dead" in page
    assert "erp.other.example" not in page
    assert secret not in page
    detail = staff_admin.get(f"/admin/webhooks/webhookendpoint/{endpoint.pk}/change/").content.decode()
    assert secret not in detail
    assert "whsec_" not in detail

    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    delivery_page = staff_admin.get(f"/admin/webhooks/webhookdelivery/{delivery.pk}/change/").content.decode()
    cells = delivery_page.split('class="field-status_code"')[1:]
    codes = [re.sub(r"<[^>]+>", "", cell.split(">", 1)[1].split("</td>", 1)[0]).strip() for cell in cells]
    assert codes == ["500", "204"], "both attempts inline, in order"

    response = staff_admin.post(
        "/admin/webhooks/webhookendpoint/", {"action": "disable", "_selected_action": [str(endpoint.pk)]}
    )
    assert response.status_code == 302
    assert not WebhookEndpoint.objects.get(pk=endpoint.pk).is_active
    assert WebhookEndpoint.objects.get(pk=theirs.pk).is_active


def test_staff_recover_an_endpoints_failures_since_a_time_from_the_admin(staff_admin, tenant, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    settings.WEBHOOK_RETRY_SCHEDULE = []
    with running(Receiver(default=Answer(500))) as receiver:
        endpoint, _ = endpoint_with_secret(tenant=tenant, url=receiver.url)
        publish_confirmed(tenant.pk)
        send_due_now()
        assert WebhookDelivery.objects.get(endpoint=endpoint).status == "dead"
        url = "/admin/webhooks/webhookendpoint/"
        selected = {"action": "recover_since", "_selected_action": [str(endpoint.pk)]}
        form = staff_admin.post(url, selected)
        assert form.status_code == 200
        assert "last attempt failed at or after" in form.content.decode()
        receiver.default = Answer(204)
        done = staff_admin.post(url, {**selected, "apply": "1", "since": "2000-01-01 00:00:00"})
        assert done.status_code == 302
        send_due_now()
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert delivery.status == "succeeded"
    assert len({r.webhook_id for r in receiver.received}) == 1


@pytest.mark.parametrize("who", ["operator_admin", "staff_admin"])
def test_the_delivery_list_never_counts_or_reads_the_whole_table(request, who, tenant):
    """The event type's choices come from the registry, not SELECT DISTINCT; a count stops at the cap."""
    client = request.getfixturevalue(who)
    WebhookEndpointFactory(tenant=tenant)
    publish_confirmed(tenant.pk)
    for params in ({}, {"event_type__exact": "order.confirmed"}, {"status__exact": "pending"}):
        assert_no_whole_table_reads(list_queries(client, CHANGELIST, params))
    assert "?event_type__exact=order.placed" in client.get(CHANGELIST).content.decode()


def test_the_operators_delivery_list_is_newest_first_along_an_index(operator_admin, tenant):
    WebhookEndpointFactory(tenant=tenant)
    publish_confirmed(tenant.pk)
    sql = rows_query(list_queries(operator_admin, CHANGELIST), "webhooks_webhookdelivery")
    assert "using webhook_delivery_created " in plan_without_sorting(sql)
