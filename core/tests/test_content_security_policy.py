"""A Content-Security-Policy on the admin, the API and Swagger UI: no inline script, inline
<style> only with the response's nonce."""

import re

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {d.split()[0]: d.split()[1:] for d in (p.strip() for p in header.split(";")) if d}


def test_the_api_and_the_admin_send_a_policy_without_unsafe_inline_script(customer_api, staff_admin):
    for response in (customer_api.get("/api/v1/products/"), staff_admin.get("/admin/"), Client().get("/admin/login/")):
        assert response.status_code == 200
        directives = policy(response)
        assert directives["script-src"] == ["'self'"]
        assert "'unsafe-inline'" not in response["Content-Security-Policy"]
        assert directives["frame-ancestors"] == ["'none'"]


def test_the_dashboards_inline_style_carries_the_responses_nonce(staff_admin):
    response = staff_admin.get("/admin/")
    [nonce] = re.findall(r"<style nonce=\"([^\"]+)\">", response.content.decode())
    assert f"'nonce-{nonce}'" in policy(response)["style-src"]


def test_swagger_ui_loads_its_script_from_a_url_not_inline():
    page = Client().get("/api/v1/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert re.search(r"<script>\s*\S", html) is None
    assert "'unsafe-inline'" not in policy(page)["script-src"]
    script = Client().get("/api/v1/docs/?script=")
    assert script.status_code == 200
    assert "SwaggerUIBundle" in script.content.decode()


def test_admin_pages_set_no_style_attribute_and_load_the_staff_stylesheet(staff_admin):
    for url in ("/admin/", "/admin/orders/order/", "/admin/inventory/product/", "/admin/domain_events/storedevent/"):
        response = staff_admin.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert re.search(r"<[^>]+\sstyle=", html) is None, url
        assert "shelfwise/admin.css" in html, url
