"""How the admin's lists show ids, money, times and errors, and find rows by an id's first characters."""

import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from staff_admin.columns import first_line, id_search, local_time, money, short_id, tenant_name
from tenants.models import Tenant
from tenants.tests.factories import TenantFactory


def test_a_short_id_shows_8_characters_and_the_whole_id_on_hover():
    key = uuid.UUID("3f1c2a9e-0000-4000-8000-000000000001")
    assert short_id(key) == f'<code class="short-id" title="{key}">3f1c2a9e</code>'
    assert short_id(None) == ""


def test_money_is_right_aligned_with_its_currency():
    html = money(Decimal("1234.5"), "EUR")
    assert ">1,234.50 EUR<" in html
    assert 'class="money"' in html
    stylesheet = (Path(__file__).parents[1] / "static" / "shelfwise" / "admin.css").read_text()
    assert re.search(r"\.money \{[^}]*text-align: right", stylesheet)


def test_times_are_shown_in_the_active_zone_with_the_zone_on_hover():
    moment = datetime(2026, 7, 1, 22, 30, tzinfo=UTC)
    with timezone.override(ZoneInfo("Europe/Paris")):
        html = local_time(moment)
    assert ">2026-07-02 00:30<" in html
    assert 'title="2026-07-02 00:30:00 CEST"' in html


def test_an_error_shows_its_first_line_cut_to_the_limit():
    assert first_line("Boom: it broke\nTraceback (most recent call last):\n  ...") == "Boom: it broke"
    assert first_line("") == ""
    long = first_line("x" * 200, limit=20)
    assert ">" + "x" * 19 + "…<" in long


def test_an_id_or_its_first_characters_select_a_range_of_the_index():
    assert id_search("id", "not an id") is None
    assert id_search("id", "3f1c") is None  # too short to be what the lists show
    exact = id_search("id", "3f1c2a9e-0000-4000-8000-000000000001")
    assert exact.children == [("id", uuid.UUID("3f1c2a9e-0000-4000-8000-000000000001"))]
    prefix = dict(id_search("id", " 3F1C2A9E ").children)
    assert prefix["id__gte"] == uuid.UUID("3f1c2a9e-0000-0000-0000-000000000000")
    assert prefix["id__lte"] == uuid.UUID("3f1c2a9e-ffff-ffff-ffff-ffffffffffff")


@pytest.mark.django_db
def test_a_prefix_finds_exactly_the_rows_whose_id_starts_with_it():
    wanted = TenantFactory(id=uuid.UUID("3f1c2a9e-0000-4000-8000-000000000001"))
    TenantFactory(id=uuid.UUID("3f1c2a9f-0000-4000-8000-000000000001"))
    TenantFactory(id=uuid.UUID("3f1c2a9d-ffff-4fff-bfff-ffffffffffff"))
    assert list(Tenant.objects.filter(id_search("id", "3f1c2a9e"))) == [wanted]


@pytest.mark.django_db
def test_tenant_names_by_id():
    tenant = TenantFactory(name="Riverside Books")
    assert tenant_name(tenant.id) == "Riverside Books"
    assert tenant_name(None) == ""
