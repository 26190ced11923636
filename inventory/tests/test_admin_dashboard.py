"""Products low on stock, for the dashboard and the product list's filter."""

import pytest

from inventory.selectors import LOW_STOCK, products_low_on_stock
from inventory.tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


def test_the_tenants_products_with_few_units_available_fewest_first(tenant, other_tenant):
    ProductFactory(tenant=tenant, sku="PLENTY", on_hand=50, reserved=0)
    ProductFactory(tenant=tenant, sku="FEW", on_hand=10, reserved=10 - LOW_STOCK)
    ProductFactory(tenant=tenant, sku="LAST", on_hand=3, reserved=2)
    ProductFactory(tenant=other_tenant, sku="THEIRS", on_hand=1, reserved=0)

    assert [p.sku for p in products_low_on_stock(tenant_id=tenant.id)] == ["LAST", "FEW"]


def test_the_product_list_filters_the_low_ones(staff_admin, tenant):
    ProductFactory(tenant=tenant, sku="PLENTY", on_hand=50, reserved=0)
    ProductFactory(tenant=tenant, sku="LAST", on_hand=3, reserved=2)
    page = staff_admin.get("/admin/inventory/product/", {"availability": "low"}).content.decode()
    assert ">LAST<" in page
    assert ">PLENTY<" not in page
