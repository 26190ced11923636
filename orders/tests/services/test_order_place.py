"""order_place: priced from the catalog, validated before anything is written, order.placed recorded."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.errors import ApplicationError
from core.fields import decrypt
from domain_events.models import StoredEvent
from orders.models import MAX_QUANTITY, Order, OrderItem
from orders.services import MAX_LINES, order_place, order_place_from
from orders.tests.helpers import events_of
from tenants.tests.factories import TenantFactory, UserFactory

pytestmark = pytest.mark.django_db


VISA = "tok_visa"


def place(tenant, customer, items, payment_token=VISA) -> Order:
    return order_place(tenant=tenant, customer=customer, items=items, payment_token=payment_token)


def test_lines_are_priced_from_the_catalog(catalog, tenant, customer):
    order = place(tenant, customer, [{"sku": "BOOK-1", "quantity": 2}, {"sku": "BOOK-2", "quantity": 3}])

    order.refresh_from_db()
    assert order.status == Order.Status.PLACED
    assert order.cancellation_reason == ""
    assert order.customer == customer
    assert order.tenant == tenant
    assert order.total_amount == Decimal("48.97")  # 2 x 12.50 + 3 x 7.99
    assert order.currency == "USD"
    items = list(order.items.values_list("sku", "title", "quantity", "unit_price"))
    assert items == [("BOOK-1", "Emma", 2, Decimal("12.50")), ("BOOK-2", "Persuasion", 3, Decimal("7.99"))]
    [question] = catalog.questions
    assert question.tenant_id == tenant.id
    assert question.skus == ("BOOK-1", "BOOK-2")


def test_a_price_sent_along_with_a_line_is_refused_not_used(catalog, tenant, customer):
    with pytest.raises(ApplicationError) as raised:
        place(tenant, customer, [{"sku": "BOOK-1", "quantity": 1, "unit_price": Decimal("0.01")}])
    assert raised.value.extra == {"items": {0: {"unit_price": ["Unknown field."]}}}
    assert not Order.objects.exists()


def test_a_request_is_refused_with_the_apis_messages_and_shape(catalog, tenant, customer, customer_api):
    """One validation for the API and every other caller: the same body gets the same answer."""
    body = {"items": [{"sku": " ", "quantity": "2"}], "payment_token": VISA}
    with pytest.raises(ApplicationError) as raised:
        order_place_from(tenant=tenant, customer=customer, data=body)
    assert (raised.value.status_code, raised.value.message) == (400, "Invalid input.")
    assert raised.value.extra == {
        "items": {0: {"sku": ["This field may not be blank."], "quantity": ["A valid integer is required."]}},
    }
    response = customer_api.post("/api/v1/orders/", body, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Invalid input.",
        "code": "invalid",
        "items": {"0": {"sku": ["This field may not be blank."], "quantity": ["A valid integer is required."]}},
    }
    assert not Order.objects.exists()


def test_the_lines_strings_are_trimmed(catalog, tenant, customer):
    order = place(tenant, customer, [{"sku": " BOOK-1 ", "quantity": 1}], payment_token=f" {VISA} ")
    assert order.items.get().sku == "BOOK-1"


def test_the_currency_is_the_tenants(catalog):
    euro_store = TenantFactory(slug="euro-books", currency="EUR")
    catalog.add(euro_store, "LIVRE-1", "9.90")
    buyer = UserFactory(tenant=euro_store, username="eve")
    order = place(euro_store, buyer, [{"sku": "LIVRE-1", "quantity": 1}])
    assert order.currency == "EUR"
    assert events_of(order.id, "order.placed")[0].payload["currency"] == "EUR"


def test_order_placed_is_recorded_with_the_order(catalog, tenant, customer):
    order = place(tenant, customer, [{"sku": "BOOK-1", "quantity": 2}], payment_token="tok_chargeDeclined")

    [event] = events_of(order.id)
    assert event.type == "order.placed"
    assert event.tenant_id == tenant.id
    assert event.aggregate_id == order.id
    # The payment token is stored encrypted (a private field): compared here as it was published.
    assert {**event.payload, "payment_token": decrypt(event.payload["payment_token"])} == {
        "order_id": str(order.id),
        "customer_id": str(customer.pk),
        "lines": [{"sku": "BOOK-1", "title": "Emma", "quantity": 2, "unit_price": "12.50"}],
        "total_amount": "25.00",
        "currency": "USD",
        "payment_token": "tok_chargeDeclined",
    }


def test_the_returned_order_carries_its_items_without_another_query(catalog, tenant, customer):
    order = place(tenant, customer, [{"sku": "BOOK-1", "quantity": 1}, {"sku": "BOOK-2", "quantity": 1}])
    with CaptureQueriesContext(connection) as queries:
        skus = [item.sku for item in order.items.all()]
    assert skus == ["BOOK-1", "BOOK-2"]
    assert len(queries) == 0


def test_placing_writes_in_one_transaction_of_two_statements(catalog, tenant, customer):
    with CaptureQueriesContext(connection) as queries:
        place(tenant, customer, [{"sku": "BOOK-1", "quantity": 1}, {"sku": "BOOK-2", "quantity": 1}])
    writes = [
        q["sql"].split()[0] for q in queries.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))
    ]
    # the order with its items, the stored event with its deliveries: one statement each
    assert writes == ["WITH", "WITH"]


def test_unknown_skus_are_refused_naming_them(catalog, tenant, customer):
    with pytest.raises(ApplicationError) as raised:
        place(
            tenant,
            customer,
            [{"sku": "BOOK-1", "quantity": 1}, {"sku": "NOPE-1", "quantity": 1}, {"sku": "NOPE-2", "quantity": 1}],
        )
    assert "NOPE-1" in raised.value.message
    assert "NOPE-2" in raised.value.message
    assert raised.value.extra["items"] == {
        1: {"sku": ["No product with sku 'NOPE-1'."]},
        2: {"sku": ["No product with sku 'NOPE-2'."]},
    }
    assert not Order.objects.exists()
    assert not StoredEvent.objects.exists()


def test_another_tenants_products_are_unknown(catalog, tenant, other_tenant):
    catalog.add(other_tenant, "THEIRS-1", "5.00")
    with pytest.raises(ApplicationError) as raised:
        place(tenant, UserFactory(tenant=tenant), [{"sku": "THEIRS-1", "quantity": 1}])
    assert raised.value.extra["items"] == {0: {"sku": ["No product with sku 'THEIRS-1'."]}}


def line(sku="BOOK-1", quantity=1):
    return {"sku": sku, "quantity": quantity}


@pytest.mark.parametrize(
    ("items", "field", "expected"),
    [
        ([], "items", {"non_field_errors": ["This list may not be empty."]}),
        (
            [line(f"S-{n}") for n in range(MAX_LINES + 1)],
            "items",
            {"non_field_errors": ["Ensure this field has no more than 100 elements."]},
        ),
        ("BOOK-1", "items", {"non_field_errors": ['Expected a list of items but got type "str".']}),
        (
            {"sku": "BOOK-1", "quantity": 1},
            "items",
            {"non_field_errors": ['Expected a list of items but got type "dict".']},
        ),
        ([line(quantity=0)], "items", {0: {"quantity": ["Ensure this value is greater than or equal to 1."]}}),
        ([line(quantity=-1)], "items", {0: {"quantity": ["Ensure this value is greater than or equal to 1."]}}),
        (
            [line(quantity=MAX_QUANTITY + 1)],
            "items",
            {0: {"quantity": ["Ensure this value is less than or equal to 10000."]}},
        ),
        ([line(quantity=10**9)], "items", {0: {"quantity": ["Ensure this value is less than or equal to 10000."]}}),
        ([line(quantity="3")], "items", {0: {"quantity": ["A valid integer is required."]}}),
        ([line(quantity=2.0)], "items", {0: {"quantity": ["A valid integer is required."]}}),
        ([line(quantity=True)], "items", {0: {"quantity": ["A valid integer is required."]}}),
        ([line(sku="")], "items", {0: {"sku": ["This field may not be blank."]}}),
        ([{"quantity": 1}], "items", {0: {"sku": ["This field is required."]}}),
        ([line(sku=7)], "items", {0: {"sku": ["Not a valid string."]}}),
        (["BOOK-1"], "items", {0: {"non_field_errors": ["Invalid data. Expected a dictionary, but got str."]}}),
        (
            [line("BOOK-1"), line("BOOK-2"), line("BOOK-1")],
            "items",
            {2: {"sku": ["'BOOK-1' appears more than once; list each sku once."]}},
        ),
    ],
)
def test_invalid_lines_are_refused_and_nothing_is_written(catalog, tenant, customer, items, field, expected):
    with pytest.raises(ApplicationError) as raised:
        place(tenant, customer, items)
    assert raised.value.status_code == 400
    assert raised.value.extra[field] == expected
    assert not catalog.questions  # refused before the catalog is even asked
    assert not Order.objects.exists()
    assert not OrderItem.objects.exists()
    assert not StoredEvent.objects.exists()


def test_the_limits_themselves_are_accepted(catalog, tenant, customer):
    for n in range(MAX_LINES):
        catalog.add(tenant, f"S-{n}", "1.00")
    order = place(tenant, customer, [line(f"S-{n}", MAX_QUANTITY if n == 0 else 1) for n in range(MAX_LINES)])
    assert order.items.count() == MAX_LINES
    assert order.total_amount == Decimal(MAX_QUANTITY + MAX_LINES - 1)


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("", ["This field may not be blank."]),
        ("   ", ["This field may not be blank."]),
        (None, ["This field may not be null."]),
        (42, ["Not a valid string."]),
        ("t" * 256, ["Ensure this field has no more than 255 characters."]),
    ],
)
def test_a_payment_token_is_required(catalog, tenant, customer, token, expected):
    with pytest.raises(ApplicationError) as raised:
        place(tenant, customer, [line()], payment_token=token)
    assert raised.value.extra == {"payment_token": expected}
    assert not Order.objects.exists()


def test_a_total_beyond_what_an_order_can_hold_is_refused(catalog, tenant, customer):
    catalog.add(tenant, "RARE-1", "99999999.00")
    with pytest.raises(ApplicationError, match="total is too large"):
        place(tenant, customer, [line("RARE-1", 1000)])
    assert not Order.objects.exists()
