"""The catalog API (docs/api.md): who may do what, what comes back, and what is refused."""

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from inventory.models import Product
from inventory.tests.factories import ProductFactory
from inventory.tests.helpers import events_of
from tenants.tests.factories import TenantFactory, UserFactory

pytestmark = pytest.mark.django_db

PRODUCTS = "/api/v1/products/"


def detail(sku: str) -> str:
    return f"{PRODUCTS}{sku}/"


def restock(sku: str) -> str:
    return f"{PRODUCTS}{sku}/restock"


NEW_BOOK = {"sku": "BOOK-1", "title": "Dune", "price": "19.99", "stock": 5}


# --- reading ----------------------------------------------------------------------------------


def test_any_user_of_the_tenant_lists_its_products_only(tenant, other_tenant, customer_api):
    ProductFactory(tenant=tenant, sku="B", title="Beta", price=Decimal("59.97"), on_hand=5, reserved=2)
    ProductFactory(tenant=tenant, sku="A", title="Alpha", price=Decimal("3"), on_hand=0)
    ProductFactory(tenant=other_tenant, sku="THEIRS")

    response = customer_api.get(PRODUCTS)

    assert response.status_code == 200
    assert response.json() == {
        "count": 2,
        "next": None,
        "previous": None,
        "results": [
            {"sku": "A", "title": "Alpha", "price": "3.00", "currency": "USD", "available": 0},
            {"sku": "B", "title": "Beta", "price": "59.97", "currency": "USD", "available": 3},
        ],
    }


def test_the_currency_is_the_tenants(api_client_for):
    euro_store = TenantFactory(slug="euro-books", currency="EUR")
    ProductFactory(tenant=euro_store, sku="A")
    client = api_client_for(UserFactory(tenant=euro_store, username="emil"))
    assert client.get(PRODUCTS).json()["results"][0]["currency"] == "EUR"


def test_the_list_is_paginated(tenant, customer_api):
    ProductFactory.create_batch(55, tenant=tenant)
    first = customer_api.get(PRODUCTS).json()
    assert first["count"] == 55
    assert len(first["results"]) == 50
    assert first["next"].endswith("?page=2")
    second = customer_api.get(first["next"]).json()
    assert len(second["results"]) == 5
    assert {r["sku"] for r in first["results"]}.isdisjoint({r["sku"] for r in second["results"]})


def test_one_product_by_sku(tenant, customer_api):
    ProductFactory(tenant=tenant, sku="my.book_1-a", title="Dune", price=Decimal("19.99"), on_hand=4)
    response = customer_api.get(detail("my.book_1-a"))
    assert response.status_code == 200
    assert response.json() == {
        "sku": "my.book_1-a",
        "title": "Dune",
        "price": "19.99",
        "currency": "USD",
        "available": 4,
    }


@pytest.mark.parametrize("credentials", [None, "Token not-a-real-token", "Bearer abc"])
def test_no_valid_token_is_401(tenant, credentials):
    ProductFactory(tenant=tenant)
    client = APIClient()
    if credentials:
        client.credentials(HTTP_AUTHORIZATION=credentials)
    response = client.get(PRODUCTS)
    assert response.status_code == 401
    assert "detail" in response.json()


# --- creating ---------------------------------------------------------------------------------


def test_staff_create_a_product_with_its_stock(tenant, staff_api):
    response = staff_api.post(PRODUCTS, NEW_BOOK, format="json")

    assert response.status_code == 201
    assert response.json() == {"sku": "BOOK-1", "title": "Dune", "price": "19.99", "currency": "USD", "available": 5}
    product = Product.objects.get(tenant=tenant, sku="BOOK-1")
    assert (product.on_hand, product.price) == (5, Decimal("19.99"))
    [event] = events_of("inventory.stock_adjusted", sku="BOOK-1")
    assert event.payload["reason"] == "initial_stock"
    assert event.payload["quantity_change"] == 5


def test_stock_defaults_to_zero(staff_api):
    body = {"sku": "BOOK-1", "title": "Dune", "price": 12}
    response = staff_api.post(PRODUCTS, body, format="json")
    assert response.status_code == 201
    assert response.json()["available"] == 0
    assert response.json()["price"] == "12.00"


def test_customers_may_not_create(customer_api):
    response = customer_api.post(PRODUCTS, NEW_BOOK, format="json")
    assert response.status_code == 403
    assert not Product.objects.exists()


def test_a_duplicate_sku_is_a_conflict(tenant, other_tenant, staff_api):
    ProductFactory(tenant=other_tenant, sku="BOOK-1")
    assert staff_api.post(PRODUCTS, NEW_BOOK, format="json").status_code == 201
    response = staff_api.post(PRODUCTS, {**NEW_BOOK, "title": "Again"}, format="json")
    assert response.status_code == 409
    assert "already exists" in response.json()["sku"][0]
    assert Product.objects.get(tenant=tenant, sku="BOOK-1").title == "Dune"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"sku": "has space"}, "sku"),
        ({"sku": "x" * 65}, "sku"),
        ({"sku": "ümlaut"}, "sku"),
        ({"sku": ""}, "sku"),
        ({"sku": ["BOOK-1"]}, "sku"),
        ({"title": ""}, "title"),
        ({"title": "t" * 201}, "title"),
        ({"title": {"en": "Dune"}}, "title"),
        ({"price": "-0.01"}, "price"),
        ({"price": -5}, "price"),
        ({"price": "1.999"}, "price"),
        ({"price": "10000000000.00"}, "price"),
        ({"price": 1e30}, "price"),
        ({"price": "NaN"}, "price"),
        ({"price": "Infinity"}, "price"),
        ({"price": "cheap"}, "price"),
        ({"price": None}, "price"),
        ({"price": True}, "price"),
        ({"stock": -1}, "stock"),
        ({"stock": 1_000_001}, "stock"),
        ({"stock": 10**30}, "stock"),
        ({"stock": 1.5}, "stock"),
        ({"stock": "many"}, "stock"),
        ({"stock": True}, "stock"),
        ({"on_hand": 5}, "on_hand"),
    ],
)
def test_invalid_input_is_400_with_the_field_named(staff_api, change, field):
    response = staff_api.post(PRODUCTS, {**NEW_BOOK, **change}, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Product.objects.exists()


@pytest.mark.parametrize("missing", ["sku", "title", "price"])
def test_required_fields(staff_api, missing):
    body = {k: v for k, v in NEW_BOOK.items() if k != missing}
    response = staff_api.post(PRODUCTS, body, format="json")
    assert response.status_code == 400
    assert response.json()[missing] == ["This field is required."]


@pytest.mark.parametrize("raw", ['{"sku": "BOOK-1", "title": ', "[1, 2]", '"just a string"', "null", ""])
def test_a_body_that_is_not_a_json_object_is_400_json(staff_api, raw):
    response = staff_api.post(PRODUCTS, raw, content_type="application/json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()
    assert not Product.objects.exists()


def test_a_non_json_content_type_is_415_json(staff_api):
    response = staff_api.post(PRODUCTS, "sku=BOOK-1", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert "detail" in response.json()


# --- updating ---------------------------------------------------------------------------------


def test_staff_change_title_and_price(tenant, staff_api):
    ProductFactory(tenant=tenant, sku="BOOK-1", title="Old", price=Decimal("5.00"), on_hand=4)
    response = staff_api.patch(detail("BOOK-1"), {"title": "New", "price": "6.50"}, format="json")
    assert response.status_code == 200
    assert response.json() == {"sku": "BOOK-1", "title": "New", "price": "6.50", "currency": "USD", "available": 4}
    product = Product.objects.get(sku="BOOK-1")
    assert (product.title, product.price, product.on_hand) == ("New", Decimal("6.50"), 4)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"price": "-1"}, "price"),
        ({"price": "1e20"}, "price"),
        ({"title": ""}, "title"),
        ({"stock": 100}, "stock"),
        ({"sku": "OTHER"}, "sku"),
        ({}, "non_field_errors"),
    ],
)
def test_invalid_changes_are_400(tenant, staff_api, body, field):
    ProductFactory(tenant=tenant, sku="BOOK-1", title="Old", price=Decimal("5.00"))
    response = staff_api.patch(detail("BOOK-1"), body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    product = Product.objects.get(sku="BOOK-1")
    assert (product.title, product.price) == ("Old", Decimal("5.00"))


def test_customers_may_not_change_products(tenant, customer_api):
    ProductFactory(tenant=tenant, sku="BOOK-1", title="Old")
    response = customer_api.patch(detail("BOOK-1"), {"title": "Mine"}, format="json")
    assert response.status_code == 403
    assert Product.objects.get(sku="BOOK-1").title == "Old"


# --- restocking -------------------------------------------------------------------------------


def test_staff_restock(tenant, staff_api):
    product = ProductFactory(tenant=tenant, sku="BOOK-1", on_hand=2, reserved=1)
    response = staff_api.post(restock("BOOK-1"), {"quantity": 10}, format="json")
    assert response.status_code == 200
    assert response.json()["available"] == 11
    product.refresh_from_db()
    assert product.on_hand == 12
    [event] = events_of("inventory.stock_adjusted", sku="BOOK-1")
    assert (event.payload["reason"], event.payload["quantity_change"], event.payload["on_hand"]) == ("restock", 10, 12)


@pytest.mark.parametrize("quantity", [0, -1, 1_000_001, 2.5, "ten", None, True, [1]])
def test_a_restock_quantity_must_be_a_positive_bounded_integer(tenant, staff_api, quantity):
    product = ProductFactory(tenant=tenant, sku="BOOK-1", on_hand=2)
    response = staff_api.post(restock("BOOK-1"), {"quantity": quantity}, format="json")
    assert response.status_code == 400
    assert "quantity" in response.json()
    product.refresh_from_db()
    assert product.on_hand == 2
    assert not events_of("inventory.stock_adjusted")


def test_customers_may_not_restock(tenant, customer_api):
    product = ProductFactory(tenant=tenant, sku="BOOK-1", on_hand=2)
    assert customer_api.post(restock("BOOK-1"), {"quantity": 1}, format="json").status_code == 403
    product.refresh_from_db()
    assert product.on_hand == 2


# --- tenant isolation -------------------------------------------------------------------------


def test_another_tenants_product_is_404_everywhere(other_tenant, staff_api):
    theirs = ProductFactory(tenant=other_tenant, sku="THEIRS", title="Theirs", on_hand=1)
    assert staff_api.get(detail("THEIRS")).status_code == 404
    assert staff_api.patch(detail("THEIRS"), {"title": "Hijacked"}, format="json").status_code == 404
    response = staff_api.post(restock("THEIRS"), {"quantity": 5}, format="json")
    assert response.status_code == 404
    assert response.json()["detail"]
    theirs.refresh_from_db()
    assert (theirs.title, theirs.on_hand) == ("Theirs", 1)


def test_an_unknown_sku_is_404(staff_api):
    assert staff_api.get(detail("NOPE")).status_code == 404


def test_the_schema_documents_the_catalog(customer_api):
    paths = customer_api.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    assert set(paths["/api/v1/products/"]) >= {"get", "post"}
    assert set(paths["/api/v1/products/{sku}/"]) >= {"get", "patch"}
    assert "post" in paths["/api/v1/products/{sku}/restock"]
