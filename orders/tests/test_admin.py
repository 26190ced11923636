"""The orders admin: tenant isolation, read-only orders, and the fulfill and cancel actions."""

from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from orders.models import Order
from orders.tests.factories import OrderFactory
from orders.tests.helpers import event_types_of, events_of
from tenants.tests.factories import UserFactory
from testsupport.admin_lists import assert_no_whole_table_reads, list_queries, plan_without_sorting, rows_query

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:orders_order_changelist")


def change_url(order: Order) -> str:
    return reverse("admin:orders_order_change", args=[order.pk])


def run_action(client: Client, action: str, orders, **extra):
    data = {"action": action, ACTION_CHECKBOX_NAME: [str(o.pk) for o in orders], **extra}
    return client.post(CHANGELIST, data, follow=False)


def test_staff_see_only_their_tenants_orders(staff_admin, tenant, other_tenant):
    own = OrderFactory(tenant=tenant)
    foreign = OrderFactory(tenant=other_tenant)
    response = staff_admin.get(CHANGELIST)
    assert response.status_code == 200
    assert str(own.pk) in response.text
    assert str(foreign.pk) not in response.text

    assert staff_admin.get(change_url(own)).status_code == 200
    assert staff_admin.get(change_url(foreign)).status_code == 302  # "does not exist", back to the index


def test_an_operator_sees_every_tenant(operator_admin, tenant, other_tenant):
    own, foreign = OrderFactory(tenant=tenant), OrderFactory(tenant=other_tenant)
    response = operator_admin.get(CHANGELIST)
    assert str(own.pk) in response.text
    assert str(foreign.pk) in response.text
    assert other_tenant.name in response.text  # the tenant column is shown to operators


def test_the_change_view_shows_the_items_read_only(staff_admin, tenant):
    order = OrderFactory(tenant=tenant, lines=[("BOOK-7", 3, "4.20")])
    response = staff_admin.get(change_url(order))
    assert response.status_code == 200
    assert "BOOK-7" in response.text
    assert "Title of BOOK-7" in response.text
    assert 'name="items-0-quantity"' not in response.text  # no editable inline
    assert 'name="_save"' not in response.text
    assert 'name="status"' not in response.text


def test_orders_cannot_be_added_changed_or_deleted_in_the_admin(staff_admin, tenant):
    order = OrderFactory(tenant=tenant)
    assert staff_admin.get(reverse("admin:orders_order_add")).status_code == 403
    assert staff_admin.post(change_url(order), {"status": "fulfilled"}).status_code == 403
    assert staff_admin.post(reverse("admin:orders_order_delete", args=[order.pk]), {"post": "yes"}).status_code == 403
    order.refresh_from_db()
    assert order.status == Order.Status.PLACED


def test_filters_by_status_and_date(staff_admin, tenant):
    placed = OrderFactory(tenant=tenant)
    confirmed = OrderFactory(tenant=tenant, status=Order.Status.CONFIRMED)
    old = OrderFactory(tenant=tenant)
    Order.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=30))

    response = staff_admin.get(CHANGELIST, {"status__exact": "confirmed"})
    assert str(confirmed.pk) in response.text
    assert str(placed.pk) not in response.text

    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    response = staff_admin.get(
        CHANGELIST, {"created_at__gte": str(today), "created_at__lt": str(today + timedelta(days=1))}
    )
    assert response.status_code == 200
    assert str(placed.pk) in response.text
    assert str(old.pk) not in response.text


def test_search_by_id_and_customer_username(staff_admin, tenant):
    carols = OrderFactory(tenant=tenant, customer=UserFactory(tenant=tenant, username="carol-reader"))
    daves = OrderFactory(tenant=tenant, customer=UserFactory(tenant=tenant, username="dave-reader"))
    by_name = staff_admin.get(CHANGELIST, {"q": "carol-reader"})
    assert str(carols.pk) in by_name.text
    assert str(daves.pk) not in by_name.text
    by_id = staff_admin.get(CHANGELIST, {"q": str(daves.pk)})
    assert str(daves.pk) in by_id.text
    assert str(carols.pk) not in by_id.text


# --- fulfill ---------------------------------------------------------------------------------


def test_fulfill_asks_for_a_tracking_number_then_fulfills(staff_admin, tenant):
    first = OrderFactory(tenant=tenant, status=Order.Status.CONFIRMED)
    second = OrderFactory(tenant=tenant, status=Order.Status.CONFIRMED)

    form = run_action(staff_admin, "fulfill_orders", [first, second])
    assert form.status_code == 200
    assert "Tracking number" in form.text
    assert f'name="tracking_number_{first.pk}"' in form.text
    first.refresh_from_db()
    assert first.status == Order.Status.CONFIRMED  # nothing happens before the form is sent

    done = run_action(
        staff_admin,
        "fulfill_orders",
        [first, second],
        apply="Fulfill",
        **{f"tracking_number_{first.pk}": "TRACK-A", f"tracking_number_{second.pk}": "TRACK-B"},
    )
    assert done.status_code == 302
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.tracking_number) == ("fulfilled", "TRACK-A")
    assert (second.status, second.tracking_number) == ("fulfilled", "TRACK-B")
    assert event_types_of(first.id) == ["order.fulfilled"]


def test_fulfill_without_a_tracking_number_shows_the_form_again(staff_admin, tenant):
    order = OrderFactory(tenant=tenant, status=Order.Status.CONFIRMED)
    response = run_action(
        staff_admin, "fulfill_orders", [order], apply="Fulfill", **{f"tracking_number_{order.pk}": ""}
    )
    assert response.status_code == 200
    assert "This field is required." in response.text
    order.refresh_from_db()
    assert order.status == Order.Status.CONFIRMED


def test_fulfill_skips_orders_that_are_not_confirmed(staff_admin, tenant):
    placed = OrderFactory(tenant=tenant)
    response = run_action(staff_admin, "fulfill_orders", [placed])
    assert response.status_code == 302
    messages = [str(m) for m in response.wsgi_request._messages]
    assert any("not confirmed" in m for m in messages)
    placed.refresh_from_db()
    assert placed.status == Order.Status.PLACED


def test_fulfill_cannot_reach_another_tenants_order(staff_admin, tenant, other_tenant):
    foreign = OrderFactory(tenant=other_tenant, status=Order.Status.CONFIRMED)
    run_action(staff_admin, "fulfill_orders", [foreign], apply="Fulfill", **{f"tracking_number_{foreign.pk}": "T"})
    foreign.refresh_from_db()
    assert foreign.status == Order.Status.CONFIRMED
    assert event_types_of(foreign.id) == []


# --- cancel ----------------------------------------------------------------------------------


def test_cancel_cancels_open_orders_and_reports_the_others(staff_admin, tenant):
    placed = OrderFactory(tenant=tenant)
    confirmed = OrderFactory(tenant=tenant, status=Order.Status.CONFIRMED)
    fulfilled = OrderFactory(tenant=tenant, status=Order.Status.FULFILLED)

    response = run_action(staff_admin, "cancel_orders", [placed, confirmed, fulfilled])
    assert response.status_code == 302
    messages = [str(m) for m in response.wsgi_request._messages]
    assert "2 order(s) cancelled." in messages
    assert any("A fulfilled order cannot be cancelled." in m for m in messages)
    for order in (placed, confirmed):
        order.refresh_from_db()
        assert (order.status, order.cancellation_reason) == ("cancelled", "customer_request")
        assert event_types_of(order.id) == ["order.cancelled"]
    fulfilled.refresh_from_db()
    assert fulfilled.status == Order.Status.FULFILLED


def test_an_admin_action_publishes_as_the_user_who_ran_it(staff_admin, operator_admin, staff, operator, tenant):
    by_staff, by_operator = OrderFactory(tenant=tenant), OrderFactory(tenant=tenant)
    run_action(staff_admin, "cancel_orders", [by_staff])
    run_action(operator_admin, "cancel_orders", [by_operator])
    assert [e.actor for e in events_of(by_staff.id)] == [f"staff:{staff.pk}"]
    assert [e.actor for e in events_of(by_operator.id)] == [f"operator:{operator.pk}"]


def test_cancel_cannot_reach_another_tenants_order(staff_admin, other_tenant):
    foreign = OrderFactory(tenant=other_tenant)
    run_action(staff_admin, "cancel_orders", [foreign])
    foreign.refresh_from_db()
    assert foreign.status == Order.Status.PLACED


def test_customers_cannot_use_the_admin(customer, tenant):
    client = Client()
    client.force_login(customer)
    assert client.get(CHANGELIST).status_code == 302  # to the login page


@pytest.mark.parametrize("who", ["operator_admin", "staff_admin"])
def test_the_order_list_never_counts_the_whole_table(request, who, tenant, customer):
    client = request.getfixturevalue(who)
    OrderFactory.create_batch(2, tenant=tenant, customer=customer)
    for params in ({}, {"status__exact": "placed"}):
        assert_no_whole_table_reads(list_queries(client, CHANGELIST, params))


def test_the_operators_order_list_is_newest_first_along_an_index(operator_admin, tenant, customer):
    OrderFactory.create_batch(2, tenant=tenant, customer=customer)
    sql = rows_query(list_queries(operator_admin, CHANGELIST), "orders_order")
    assert "using order_created " in plan_without_sorting(sql)
