"""The staff admin's home is the bookstore's dashboard; every admin page shows the bookstore's time."""

import pytest

pytestmark = pytest.mark.django_db


def test_staff_open_on_their_bookstores_dashboard_with_every_panel_in_order(staff_admin, tenant):
    page = staff_admin.get("/admin/").content.decode()
    panels = ["figures", "revenue-chart", "top-products", "low-stock", "handler-trouble", "webhook-trouble"]
    positions = [page.index(f'id="{panel}"') for panel in panels]
    assert positions == sorted(positions)
    assert tenant.name in page
    assert "<svg" in page
    assert "Dashboard of:" not in page  # staff choose no bookstore


def test_an_operator_chooses_the_bookstore_whose_dashboard_to_see(operator_admin, tenant, other_tenant):
    home = operator_admin.get("/admin/").content.decode()
    assert f'href="?tenant={other_tenant.slug}"' in home
    assert 'id="figures"' not in home
    chosen = operator_admin.get("/admin/", {"tenant": other_tenant.slug}).content.decode()
    assert 'id="figures"' in chosen
    assert other_tenant.name in chosen


def test_a_customer_is_sent_to_the_login(client, customer):
    client.force_login(customer)
    assert client.get("/admin/").status_code == 302
