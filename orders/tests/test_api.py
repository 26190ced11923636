"""The orders API: placing, reading, cancelling and fulfilling, and who may see what."""

import json

import pytest
from django.utils.dateparse import parse_datetime

from core.fields import decrypt
from domain_events.models import StoredEvent
from orders.models import Order
from orders.tests.factories import OrderFactory
from orders.tests.helpers import event_types_of, events_of
from tenants.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

ORDERS = "/api/v1/orders/"
ORDER_FIELDS = {
    "id",
    "status",
    "cancellation_reason",
    "items",
    "total_amount",
    "currency",
    "tracking_number",
    "created_at",
    "updated_at",
}
VISA = "tok_visa"


def detail(order) -> str:
    return f"{ORDERS}{order.id}/"


def place(client, items, payment_token=VISA, **extra):
    return client.post(ORDERS, {"items": items, "payment_token": payment_token}, format="json", **extra)


def assert_nothing_written() -> None:
    assert not Order.objects.exists()
    assert not StoredEvent.objects.exists()


# --- placing --------------------------------------------------------------------------------


def test_a_customer_places_an_order(catalog, customer_api, customer):
    response = place(customer_api, [{"sku": "BOOK-1", "quantity": 2}, {"sku": "BOOK-2", "quantity": 1}])

    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == ORDER_FIELDS
    order = Order.objects.get()
    assert body["id"] == str(order.id)
    assert body["status"] == "placed"
    assert body["cancellation_reason"] == ""
    assert body["tracking_number"] == ""
    assert body["total_amount"] == "32.99"
    assert body["currency"] == "USD"
    assert body["items"] == [
        {"sku": "BOOK-1", "title": "Emma", "quantity": 2, "unit_price": "12.50"},
        {"sku": "BOOK-2", "title": "Persuasion", "quantity": 1, "unit_price": "7.99"},
    ]
    assert parse_datetime(body["created_at"]) == order.created_at
    assert parse_datetime(body["updated_at"]) == order.updated_at
    assert order.customer == customer
    assert event_types_of(order.id) == ["order.placed"]
    assert decrypt(events_of(order.id)[0].payload["payment_token"]) == VISA  # stored encrypted


def test_prices_and_totals_sent_by_the_client_are_refused_not_used(catalog, customer_api):
    response = customer_api.post(
        ORDERS,
        {
            "items": [{"sku": "BOOK-1", "quantity": 1, "unit_price": "0.01", "title": "Free"}],
            "payment_token": VISA,
            "total_amount": "0.01",
            "status": "fulfilled",
        },
        format="json",
    )
    assert response.status_code == 400
    body = response.json()
    assert body["total_amount"] == ["Unknown field."]
    assert body["status"] == ["Unknown field."]
    assert_nothing_written()


def test_staff_may_place_orders_too(catalog, staff_api, staff):
    response = place(staff_api, [{"sku": "BOOK-2", "quantity": 1}])
    assert response.status_code == 201
    assert Order.objects.get().customer == staff


def test_placing_takes_few_queries(catalog, customer_api, django_assert_max_num_queries):
    items = [{"sku": "BOOK-1", "quantity": 1}, {"sku": "BOOK-2", "quantity": 3}]
    # token and user, tenant, order, items (one insert), stored event, deliveries (one insert); the
    # catalog double asks nothing; the test's own transaction turns the service's into a savepoint (2).
    with django_assert_max_num_queries(8):
        response = place(customer_api, items)
    assert response.status_code == 201


def test_placing_with_the_real_catalog_takes_few_queries(staff_api, customer_api, django_assert_max_num_queries):
    for sku in ("REAL-1", "REAL-2"):
        created = staff_api.post(
            "/api/v1/products/", {"sku": sku, "title": sku, "price": "3.10", "stock": 5}, format="json"
        )
        assert created.status_code == 201
    # As above, plus the catalog's one query for both prices.
    with django_assert_max_num_queries(9):
        response = place(customer_api, [{"sku": "REAL-1", "quantity": 1}, {"sku": "REAL-2", "quantity": 2}])
    assert response.status_code == 201
    assert response.json()["total_amount"] == "9.30"


@pytest.mark.parametrize(
    "headers", [{}, {"HTTP_AUTHORIZATION": "Token not-a-real-token"}, {"HTTP_AUTHORIZATION": "Bearer x"}]
)
def test_placing_needs_a_valid_token(catalog, client, headers):
    response = client.post(
        ORDERS,
        json.dumps({"items": [{"sku": "BOOK-1", "quantity": 1}], "payment_token": VISA}),
        content_type="application/json",
        **headers,
    )
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert "detail" in response.json()
    assert_nothing_written()


def test_a_user_of_no_bookstore_may_not_place(catalog, api_client_for):
    drifter = UserFactory(tenant=None, username="drifter")
    response = place(api_client_for(drifter), [{"sku": "BOOK-1", "quantity": 1}])
    assert response.status_code == 403
    assert_nothing_written()


def line(sku="BOOK-1", quantity=1):
    return {"sku": sku, "quantity": quantity}


QUANTITY_RANGE = "Ensure this value is greater than or equal to 1."
QUANTITY_MAX = "Ensure this value is less than or equal to 10000."
NOT_AN_INTEGER = "A valid integer is required."


@pytest.mark.parametrize(
    ("body", "expected_errors"),
    [
        ({"items": [line(quantity=0)], "payment_token": VISA}, {"items": {"0": {"quantity": [QUANTITY_RANGE]}}}),
        ({"items": [line(quantity=-1)], "payment_token": VISA}, {"items": {"0": {"quantity": [QUANTITY_RANGE]}}}),
        ({"items": [line(quantity=10**9)], "payment_token": VISA}, {"items": {"0": {"quantity": [QUANTITY_MAX]}}}),
        ({"items": [line(quantity=10_001)], "payment_token": VISA}, {"items": {"0": {"quantity": [QUANTITY_MAX]}}}),
        ({"items": [line(quantity="3")], "payment_token": VISA}, {"items": {"0": {"quantity": [NOT_AN_INTEGER]}}}),
        ({"items": [line(quantity=2.5)], "payment_token": VISA}, {"items": {"0": {"quantity": [NOT_AN_INTEGER]}}}),
        ({"items": [line(quantity=3.0)], "payment_token": VISA}, {"items": {"0": {"quantity": [NOT_AN_INTEGER]}}}),
        ({"items": [line(quantity=True)], "payment_token": VISA}, {"items": {"0": {"quantity": [NOT_AN_INTEGER]}}}),
        (
            {"items": [line(quantity=None)], "payment_token": VISA},
            {"items": {"0": {"quantity": ["This field may not be null."]}}},
        ),
        (
            {"items": [{"sku": "BOOK-1"}], "payment_token": VISA},
            {"items": {"0": {"quantity": ["This field is required."]}}},
        ),
        ({"items": [{"quantity": 1}], "payment_token": VISA}, {"items": {"0": {"sku": ["This field is required."]}}}),
        ({"items": [line(sku=123)], "payment_token": VISA}, {"items": {"0": {"sku": ["Not a valid string."]}}}),
        ({"items": [line(sku="")], "payment_token": VISA}, {"items": {"0": {"sku": ["This field may not be blank."]}}}),
        (
            {"items": [line(sku="X" * 65)], "payment_token": VISA},
            {"items": {"0": {"sku": ["Ensure this field has no more than 64 characters."]}}},
        ),
        ({"items": [], "payment_token": VISA}, {"items": {"non_field_errors": ["This list may not be empty."]}}),
        (
            {"items": [line(f"S-{n}") for n in range(10_000)], "payment_token": VISA},
            {"items": {"non_field_errors": ["Ensure this field has no more than 100 elements."]}},
        ),
        (
            {"items": [line(f"S-{n}") for n in range(101)], "payment_token": VISA},
            {"items": {"non_field_errors": ["Ensure this field has no more than 100 elements."]}},
        ),
        (
            {"items": "BOOK-1", "payment_token": VISA},
            {"items": {"non_field_errors": ['Expected a list of items but got type "str".']}},
        ),
        (
            {"items": {"sku": "BOOK-1", "quantity": 1}, "payment_token": VISA},
            {"items": {"non_field_errors": ['Expected a list of items but got type "dict".']}},
        ),
        ({"items": None, "payment_token": VISA}, {"items": ["This field may not be null."]}),
        (
            {"items": [5], "payment_token": VISA},
            {"items": {"0": {"non_field_errors": ["Invalid data. Expected a dictionary, but got int."]}}},
        ),
        (
            {"items": ["BOOK-1"], "payment_token": VISA},
            {"items": {"0": {"non_field_errors": ["Invalid data. Expected a dictionary, but got str."]}}},
        ),
        ({"payment_token": VISA}, {"items": ["This field is required."]}),
        ({"items": [line()]}, {"payment_token": ["This field is required."]}),
        ({"items": [line()], "payment_token": ""}, {"payment_token": ["This field may not be blank."]}),
        ({"items": [line()], "payment_token": "   "}, {"payment_token": ["This field may not be blank."]}),
        ({"items": [line()], "payment_token": None}, {"payment_token": ["This field may not be null."]}),
        ({"items": [line()], "payment_token": 4242}, {"payment_token": ["Not a valid string."]}),
        (
            {"items": [line()], "payment_token": "t" * 256},
            {"payment_token": ["Ensure this field has no more than 255 characters."]},
        ),
        ([line()], {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
    ],
    ids=[
        "quantity_0",
        "quantity_negative",
        "quantity_10e9",
        "quantity_10001",
        "quantity_string",
        "quantity_fraction",
        "quantity_float",
        "quantity_bool",
        "quantity_null",
        "quantity_missing",
        "sku_missing",
        "sku_number",
        "sku_blank",
        "sku_too_long",
        "no_lines",
        "10000_lines",
        "101_lines",
        "items_a_string",
        "items_an_object",
        "items_null",
        "item_a_number",
        "item_a_string",
        "items_missing",
        "token_missing",
        "token_blank",
        "token_whitespace",
        "token_null",
        "token_number",
        "token_too_long",
        "body_a_list",
    ],
)
def test_bad_input_is_a_400_with_field_messages_and_writes_nothing(catalog, customer_api, body, expected_errors):
    response = customer_api.post(ORDERS, body, format="json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    errors = response.json()
    for field, messages in expected_errors.items():
        assert errors[field] == messages
    assert_nothing_written()


@pytest.mark.parametrize(
    ("body", "expected_errors"),
    [
        (
            {"items": [line("NOPE-1"), line("BOOK-2")], "payment_token": VISA},
            {"items": {"0": {"sku": ["No product with sku 'NOPE-1'."]}}},
        ),
        (
            {"items": [line("BOOK-1"), line("BOOK-1", 2)], "payment_token": VISA},
            {"items": {"1": {"sku": ["'BOOK-1' appears more than once; list each sku once."]}}},
        ),
    ],
    ids=["unknown_sku", "duplicate_skus"],
)
def test_a_well_formed_order_that_cannot_be_placed_is_a_400_with_field_messages(
    catalog, customer_api, body, expected_errors
):
    """The OpenAPI document can say what an order looks like, not which skus exist or repeat."""
    response = customer_api.post(ORDERS, body, format="json")
    assert response.status_code == 400
    errors = response.json()
    assert errors["code"] == "invalid"
    for field, messages in expected_errors.items():
        assert errors[field] == messages
    assert_nothing_written()


@pytest.mark.parametrize(
    ("content", "content_type", "status", "field"),
    [
        ('{"items": [{"sku": "BOOK-1", "quantity": 1}], "payment_token": ', "application/json", 400, "detail"),
        ("not json at all", "application/json", 400, "detail"),
        ("", "application/json", 400, "items"),
        ("items=BOOK-1&payment_token=tok_visa", "application/x-www-form-urlencoded", 415, "detail"),
    ],
    ids=["truncated_json", "not_json", "empty_body", "form_encoded"],
)
def test_a_body_that_is_not_json_is_a_4xx_json_error(catalog, customer_api, content, content_type, status, field):
    response = customer_api.generic("POST", ORDERS, content, content_type=content_type)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert field in response.json()
    assert_nothing_written()


# --- reading --------------------------------------------------------------------------------


@pytest.fixture
def orders_of_everyone(tenant, other_tenant, customer):
    """Two orders of the customer, one of another customer, one of another tenant."""
    neighbour = UserFactory(tenant=tenant, username="dave")
    stranger = UserFactory(tenant=other_tenant, username="olga")
    return {
        "own_old": OrderFactory(tenant=tenant, customer=customer),
        "own_new": OrderFactory(tenant=tenant, customer=customer, lines=[("BOOK-2", 1, "7.99")]),
        "neighbours": OrderFactory(tenant=tenant, customer=neighbour),
        "foreign": OrderFactory(tenant=other_tenant, customer=stranger),
    }


def ids_in(response) -> list[str]:
    return [o["id"] for o in response.json()["results"]]


def test_a_customer_lists_only_their_own_orders_newest_first(customer_api, orders_of_everyone):
    response = customer_api.get(ORDERS)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 2
    assert ids_in(response) == [str(orders_of_everyone["own_new"].id), str(orders_of_everyone["own_old"].id)]
    assert set(body["results"][0]) == ORDER_FIELDS
    assert body["results"][0]["items"] == [
        {"sku": "BOOK-2", "title": "Title of BOOK-2", "quantity": 1, "unit_price": "7.99"}
    ]
    assert body["results"][0]["total_amount"] == "7.99"


def test_staff_list_every_order_of_their_tenant_and_no_other(staff_api, orders_of_everyone):
    response = staff_api.get(ORDERS)
    assert response.status_code == 200
    assert set(ids_in(response)) == {str(orders_of_everyone[name].id) for name in ("own_old", "own_new", "neighbours")}


def test_the_list_is_paginated_and_filters_by_status(staff_api, tenant):
    for _ in range(3):
        OrderFactory(tenant=tenant, status=Order.Status.CONFIRMED)
    for _ in range(52):
        OrderFactory(tenant=tenant, lines=[])
    first_page = staff_api.get(ORDERS).json()
    assert first_page["count"] == 55
    assert len(first_page["results"]) == 50
    assert first_page["next"].endswith("?page=2")
    assert len(staff_api.get(first_page["next"]).json()["results"]) == 5

    confirmed = staff_api.get(ORDERS, {"status": "confirmed"}).json()
    assert confirmed["count"] == 3
    assert {o["status"] for o in confirmed["results"]} == {"confirmed"}
    bad_filter = staff_api.get(ORDERS, {"status": "lost"})
    assert bad_filter.status_code == 400
    assert "status" in bad_filter.json()


def test_listing_takes_the_same_few_queries_for_many_orders(staff_api, tenant, django_assert_num_queries):
    for _ in range(20):
        OrderFactory(tenant=tenant, lines=[("A", 1, "1.00"), ("B", 2, "2.00")])
    # token and user, count, page, items of the page
    with django_assert_num_queries(4):
        response = staff_api.get(ORDERS)
    assert len(response.json()["results"]) == 20


def test_a_customer_reads_their_own_order(customer_api, orders_of_everyone):
    order = orders_of_everyone["own_old"]
    response = customer_api.get(detail(order))
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(order.id)
    assert body["total_amount"] == "25.00"
    assert body["items"] == [{"sku": "BOOK-1", "title": "Title of BOOK-1", "quantity": 2, "unit_price": "12.50"}]


@pytest.mark.parametrize(
    ("client_name", "order_name"),
    [("customer_api", "neighbours"), ("customer_api", "foreign"), ("staff_api", "foreign")],
)
def test_an_order_one_may_not_see_is_a_404(request, orders_of_everyone, client_name, order_name):
    client = request.getfixturevalue(client_name)
    order = orders_of_everyone[order_name]
    for response in (
        client.get(detail(order)),
        client.post(f"{detail(order)}cancel"),
    ):
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
    order.refresh_from_db()
    assert order.status == Order.Status.PLACED


def test_staff_read_any_order_of_their_tenant(staff_api, orders_of_everyone):
    response = staff_api.get(detail(orders_of_everyone["neighbours"]))
    assert response.status_code == 200


def test_an_unknown_or_malformed_order_id_is_a_json_404(customer_api):
    assert customer_api.get(f"{ORDERS}00000000-0000-0000-0000-000000000000/").status_code == 404
    response = customer_api.get(f"{ORDERS}not-a-uuid/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"


# --- cancelling -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [Order.Status.PLACED, Order.Status.CONFIRMED])
def test_the_customer_cancels_their_open_order(customer_api, tenant, customer, status):
    order = OrderFactory(tenant=tenant, customer=customer, status=status)
    response = customer_api.post(f"{detail(order)}cancel")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["cancellation_reason"]) == ("cancelled", "customer_request")
    assert set(body) == ORDER_FIELDS
    [event] = events_of(order.id, "order.cancelled")
    assert event.payload["previous_status"] == status
    assert event.actor == f"customer:{customer.pk}", "the request's user caused it"


def test_staff_cancel_a_customers_order(staff_api, tenant, staff):
    order = OrderFactory(tenant=tenant)
    response = staff_api.post(f"{detail(order)}cancel")
    assert response.status_code == 200
    assert response.json()["cancellation_reason"] == "customer_request"
    [event] = events_of(order.id, "order.cancelled")
    assert event.actor == f"staff:{staff.pk}"


@pytest.mark.parametrize(
    ("status", "reason", "message"),
    [
        (Order.Status.FULFILLED, "", "A fulfilled order cannot be cancelled."),
        (Order.Status.CANCELLED, "out_of_stock", "The order is already cancelled."),
    ],
)
def test_cancelling_a_closed_order_is_a_409(customer_api, tenant, customer, status, reason, message):
    order = OrderFactory(tenant=tenant, customer=customer, status=status, cancellation_reason=reason)
    response = customer_api.post(f"{detail(order)}cancel")
    assert response.status_code == 409
    assert response.json() == {"detail": message, "code": "conflict", "status": status}
    order.refresh_from_db()
    assert (order.status, order.cancellation_reason) == (status, reason)
    assert event_types_of(order.id) == []


# --- fulfilling -----------------------------------------------------------------------------


def test_staff_fulfill_a_confirmed_order(staff_api, tenant):
    order = OrderFactory(tenant=tenant, status=Order.Status.CONFIRMED)
    response = staff_api.post(f"{detail(order)}fulfill", {"tracking_number": "1Z999AA1"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["tracking_number"]) == ("fulfilled", "1Z999AA1")
    order.refresh_from_db()
    assert order.shipped_at is not None
    assert event_types_of(order.id) == ["order.fulfilled"]


@pytest.mark.parametrize("status", [Order.Status.PLACED, Order.Status.FULFILLED, Order.Status.CANCELLED])
def test_fulfilling_an_order_that_is_not_confirmed_is_a_409(staff_api, tenant, status):
    reason = "customer_request" if status == Order.Status.CANCELLED else ""
    order = OrderFactory(tenant=tenant, status=status, cancellation_reason=reason)
    response = staff_api.post(f"{detail(order)}fulfill", {"tracking_number": "1Z999AA1"}, format="json")
    assert response.status_code == 409
    assert response.json()["status"] == status
    assert event_types_of(order.id) == []


def test_customers_may_not_fulfill(customer_api, tenant, customer):
    order = OrderFactory(tenant=tenant, customer=customer, status=Order.Status.CONFIRMED)
    response = customer_api.post(f"{detail(order)}fulfill", {"tracking_number": "1Z999AA1"}, format="json")
    assert response.status_code == 403
    order.refresh_from_db()
    assert order.status == Order.Status.CONFIRMED


def test_another_tenants_staff_cannot_fulfill_and_get_a_404(api_client_for, other_tenant, tenant):
    order = OrderFactory(tenant=tenant, status=Order.Status.CONFIRMED)
    foreign_staff = api_client_for(UserFactory(tenant=other_tenant, username="olga", is_staff=True))
    response = foreign_staff.post(f"{detail(order)}fulfill", {"tracking_number": "1Z999AA1"}, format="json")
    assert response.status_code == 404
    order.refresh_from_db()
    assert order.status == Order.Status.CONFIRMED


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "This field is required."),
        ({"tracking_number": ""}, "This field may not be blank."),
        ({"tracking_number": 12345}, "Not a valid string."),
        ({"tracking_number": "T" * 101}, "Ensure this field has no more than 100 characters."),
    ],
)
def test_fulfilling_needs_a_tracking_number(staff_api, tenant, body, message):
    order = OrderFactory(tenant=tenant, status=Order.Status.CONFIRMED)
    response = staff_api.post(f"{detail(order)}fulfill", body, format="json")
    assert response.status_code == 400
    assert response.json()["tracking_number"] == [message]
    order.refresh_from_db()
    assert order.status == Order.Status.CONFIRMED


def test_the_schema_documents_the_orders_operations(client):
    response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert set(paths["/api/v1/orders/"]) >= {"get", "post"}
    assert "post" in paths["/api/v1/orders/{order_id}/cancel"]
    assert "post" in paths["/api/v1/orders/{order_id}/fulfill"]
    assert "get" in paths["/api/v1/orders/{order_id}/"]
    place = paths["/api/v1/orders/"]["post"]
    assert any(p["name"] == "Idempotency-Key" for p in place["parameters"])
    listing = paths["/api/v1/orders/"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert "Paginated" in listing["$ref"]


def test_unknown_fields_are_refused_with_a_field_message_and_nothing_is_written(catalog, customer_api):
    response = customer_api.post(
        ORDERS,
        {"items": [{"sku": "BOOK-1", "quantity": 1, "price": "0.01"}], "payment_token": VISA, "total": "0", "x": "y"},
        format="json",
    )
    assert response.status_code == 400
    body = response.json()
    assert body["total"] == ["Unknown field."]
    assert body["x"] == ["Unknown field."]
    assert_nothing_written()
    line = place(customer_api, [{"sku": "BOOK-1", "quantity": 1, "unit_price": "0.01"}])
    assert line.status_code == 400
    assert line.json()["items"]["0"]["unit_price"] == ["Unknown field."]
    assert_nothing_written()
