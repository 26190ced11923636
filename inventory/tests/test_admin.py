"""The catalog in the admin: tenant-scoped for staff, writes through the services."""

import uuid
from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client

from inventory.models import Product
from inventory.services import stock_reserve_for_order
from inventory.tests.factories import ProductFactory, order_line
from inventory.tests.helpers import events_of
from tenants.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PRODUCTS = "/admin/inventory/product/"
RESERVATIONS = "/admin/inventory/reservation/"


@pytest.fixture
def staff_admin(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def ours(tenant):
    return ProductFactory(tenant=tenant, sku="OURS-1", title="Our book", price=Decimal("5.00"), on_hand=4, reserved=1)


@pytest.fixture
def theirs(other_tenant):
    return ProductFactory(tenant=other_tenant, sku="THEIRS-1", title="Their book", on_hand=7)


def test_staff_see_only_their_tenants_products(staff_admin, ours, theirs):
    response = staff_admin.get(PRODUCTS)
    assert response.status_code == 200
    listed = list(response.context["cl"].result_list)
    assert listed == [ours]
    content = response.content.decode()
    assert "OURS-1" in content
    assert "THEIRS-1" not in content
    # No tenant filter or column that would name other bookstores.
    assert "tenant-b" not in content.lower()
    assert "Tenant B" not in content


def test_the_changelist_shows_stock_and_searches(staff_admin, ours, tenant):
    ProductFactory(tenant=tenant, sku="OTHER", title="Something else")
    response = staff_admin.get(PRODUCTS, {"q": "Our book"})
    assert [p.sku for p in response.context["cl"].result_list] == ["OURS-1"]
    content = response.content.decode()
    for cell in ('class="field-on_hand">4<', 'class="field-reserved">1<', 'class="field-available">3<'):
        assert cell in content


def test_staff_cannot_open_another_tenants_product(staff_admin, theirs):
    response = staff_admin.get(f"{PRODUCTS}{theirs.pk}/change/")
    assert response.status_code in (302, 404)
    if response.status_code == 302:
        assert response["Location"] == "/admin/"
    response = staff_admin.post(f"{PRODUCTS}{theirs.pk}/change/", {"title": "Hijacked", "price": "1.00"})
    assert response.status_code in (302, 404)
    theirs.refresh_from_db()
    assert theirs.title == "Their book"


def test_superusers_see_every_tenant(ours, theirs):
    client = Client()
    client.force_login(UserFactory(username="root", tenant=None, is_staff=True, is_superuser=True))
    response = client.get(PRODUCTS)
    assert set(response.context["cl"].result_list) == {ours, theirs}


@pytest.mark.parametrize(("url", "row"), [(PRODUCTS, "product"), (RESERVATIONS, "reservation")])
def test_only_operators_get_the_bookstore_column_filter_and_field(staff_admin, ours, url, row):
    """Operators tell bookstores apart in a list (a column read in the list's one query, a filter)
    and on a row's page (its first field); staff, who see one bookstore, get none of them."""
    obj = (
        ours
        if row == "product"
        else stock_reserve_for_order(tenant_id=ours.tenant_id, order_id=uuid.uuid4(), lines=(order_line(ours),))
    )
    operator = Client()
    operator.force_login(UserFactory(username="root", tenant=None, is_staff=True, is_superuser=True))
    for client, shown in ((operator, True), (staff_admin, False)):
        changelist = client.get(url).context["cl"]
        assert ("tenant" in changelist.list_display) is shown
        assert ("tenant" in changelist.list_filter) is shown
        assert ("tenant" in (changelist.list_select_related or [])) is shown
        page = client.get(f"{url}{obj.pk}/change/")
        fields = [name for _, options in page.context["adminform"].fieldsets for name in options["fields"]]
        assert (fields[0] == "tenant") is shown
        assert fields.count("tenant") == (1 if shown else 0)


def test_the_price_is_editable_in_the_list(staff_admin, ours):
    response = staff_admin.post(
        PRODUCTS,
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-MIN_NUM_FORMS": "0",
            "form-MAX_NUM_FORMS": "1000",
            "form-0-id": str(ours.pk),
            "form-0-price": "7.50",
            "_save": "Save",
        },
    )
    assert response.status_code == 302
    ours.refresh_from_db()
    assert ours.price == Decimal("7.50")


def test_the_change_form_keeps_stock_read_only(staff_admin, ours):
    response = staff_admin.post(
        f"{PRODUCTS}{ours.pk}/change/", {"title": "Renamed", "price": "6.00", "on_hand": "999", "sku": "NEW"}
    )
    assert response.status_code == 302
    ours.refresh_from_db()
    assert (ours.title, ours.price, ours.on_hand, ours.sku) == ("Renamed", Decimal("6.00"), 4, "OURS-1")


def test_staff_add_a_product_to_their_own_tenant(staff_admin, tenant, ours):
    response = staff_admin.post(f"{PRODUCTS}add/", {"sku": "NEW-1", "title": "New book", "price": "3.50"})
    assert response.status_code == 302
    product = Product.objects.get(sku="NEW-1")
    assert (product.tenant_id, product.on_hand, product.price) == (tenant.pk, 0, Decimal("3.50"))

    duplicate = staff_admin.post(f"{PRODUCTS}add/", {"sku": "OURS-1", "title": "Again", "price": "1.00"})
    assert duplicate.status_code == 200
    assert "already exists" in str(duplicate.context["adminform"].form.errors["sku"])
    assert Product.objects.filter(sku="OURS-1").count() == 1


def test_the_restock_action_asks_for_a_quantity_then_restocks(staff_admin, ours, tenant):
    second = ProductFactory(tenant=tenant, sku="OURS-2", on_hand=0)
    selected = {"action": "restock", ACTION_CHECKBOX_NAME: [str(ours.pk), str(second.pk)]}

    asked = staff_admin.post(PRODUCTS, selected)
    assert asked.status_code == 200
    assert "quantity" in asked.context["form"].fields
    assert {p.sku for p in asked.context["products"]} == {"OURS-1", "OURS-2"}

    invalid = staff_admin.post(PRODUCTS, {**selected, "quantity": "0", "apply": "Restock"})
    assert invalid.status_code == 200
    assert invalid.context["form"].errors["quantity"]

    done = staff_admin.post(PRODUCTS, {**selected, "quantity": "6", "apply": "Restock"})
    assert done.status_code == 302
    ours.refresh_from_db()
    second.refresh_from_db()
    assert (ours.on_hand, second.on_hand) == (10, 6)
    adjustments = {e.payload["sku"]: e.payload for e in events_of("inventory.stock_adjusted", reason="restock")}
    assert adjustments["OURS-1"]["quantity_change"] == 6
    assert adjustments["OURS-1"]["on_hand"] == 10
    assert adjustments["OURS-2"]["on_hand"] == 6


def test_the_restock_action_ignores_another_tenants_products(staff_admin, ours, theirs):
    selected = {"action": "restock", ACTION_CHECKBOX_NAME: [str(theirs.pk)], "quantity": "5", "apply": "Restock"}
    staff_admin.post(PRODUCTS, selected)
    theirs.refresh_from_db()
    assert theirs.on_hand == 7
    assert not events_of("inventory.stock_adjusted")


def test_reservations_are_read_only_and_scoped(staff_admin, tenant, other_tenant, ours, theirs):
    order_id = uuid.uuid4()
    ours_reservation = stock_reserve_for_order(tenant_id=tenant.pk, order_id=order_id, lines=(order_line(ours, 2),))
    theirs_reservation = stock_reserve_for_order(
        tenant_id=other_tenant.pk, order_id=uuid.uuid4(), lines=(order_line(theirs, 1),)
    )

    listed = staff_admin.get(RESERVATIONS)
    assert list(listed.context["cl"].result_list) == [ours_reservation]

    page = staff_admin.get(f"{RESERVATIONS}{ours_reservation.pk}/change/")
    assert page.status_code == 200
    content = page.content.decode()
    assert str(order_id) in content
    assert "OURS-1" in content
    assert 'name="_save"' not in content

    response = staff_admin.post(f"{RESERVATIONS}{ours_reservation.pk}/change/", {"status": "released"})
    assert response.status_code == 403
    ours_reservation.refresh_from_db()
    assert ours_reservation.status == "reserved"
    assert staff_admin.get(f"{RESERVATIONS}{theirs_reservation.pk}/change/").status_code in (302, 404)
    assert staff_admin.get(f"{RESERVATIONS}add/").status_code == 403


def test_superusers_see_which_tenant_a_reservation_belongs_to(tenant, ours):
    reservation = stock_reserve_for_order(tenant_id=tenant.pk, order_id=uuid.uuid4(), lines=(order_line(ours),))
    client = Client()
    client.force_login(UserFactory(username="root", tenant=None, is_staff=True, is_superuser=True))
    page = client.get(f"{RESERVATIONS}{reservation.pk}/change/")
    assert page.status_code == 200
    assert tenant.name in page.content.decode()
