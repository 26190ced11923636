"""The audit trail in the admin: read-only, the staff member's tenant only, searchable."""

import re

import pytest
from django.test import Client

from audit.models import AuditEntry
from tenants.tests.factories import UserFactory
from testsupport.admin_lists import assert_no_whole_table_reads, list_queries

pytestmark = pytest.mark.django_db(transaction=True)


def test_staff_read_only_their_tenants_trail_and_search_it_by_aggregate(
    staff_admin, tenant, other_tenant, record_events
):
    mine = record_events(tenant, 2)
    theirs = record_events(other_tenant, 1)
    page = staff_admin.get("/admin/audit/auditentry/")
    assert page.status_code == 200
    body = page.content.decode()
    assert str(mine[0].aggregate_id) in body
    assert str(theirs[0].aggregate_id) not in body
    found = staff_admin.get(f"/admin/audit/auditentry/?q={mine[0].aggregate_id}").content.decode()
    assert "2 audit entries" in found or found.count(str(mine[0].aggregate_id)) >= 2
    other = AuditEntry.objects.get(tenant_id=other_tenant.id)
    assert staff_admin.get(f"/admin/audit/auditentry/{other.pk}/change/").status_code in (302, 404)
    entry = AuditEntry.objects.filter(tenant_id=tenant.id).first()
    detail = staff_admin.get(f"/admin/audit/auditentry/{entry.pk}/change/")
    assert detail.status_code == 200
    assert entry.hash in detail.content.decode()
    assert "Save" not in detail.content.decode()


def test_operators_see_each_entrys_bookstore_by_name(tenant, other_tenant, record_events):
    record_events(tenant, 1)
    record_events(other_tenant, 1)
    operator = Client()
    operator.force_login(UserFactory(username="root", tenant=None, is_staff=True, is_superuser=True))
    body = operator.get("/admin/audit/auditentry/").content.decode()
    cells = re.findall(r'<td class="field-tenant">([^<]*)</td>', body)
    assert sorted(cells) == sorted([tenant.name, other_tenant.name])


def test_staff_filter_the_trail_by_kind_of_actor_and_by_one_actor(staff_admin, staff, tenant, record_events):
    from domain_events.context import acting_as

    record_events(tenant, 1)
    with acting_as(f"staff:{staff.pk}"):
        record_events(tenant, 2)
    mine = AuditEntry.objects.filter(tenant_id=tenant.id, actor=f"staff:{staff.pk}")
    assert mine.count() == 2

    def listed(query: str) -> set[int]:
        body = staff_admin.get(f"/admin/audit/auditentry/?{query}").content.decode()
        return {int(n) for n in re.findall(r'<th class="field-sequence"><a [^>]*>(\d+)</a>', body)}

    assert listed("actor=staff") == {e.sequence for e in mine}
    assert listed(f"actor=staff:{staff.pk}") == {e.sequence for e in mine}
    assert listed("actor=system") == {1}
    assert listed("actor=customer") == set()
    assert listed(f"q=staff:{staff.pk}") == {e.sequence for e in mine}
    page = staff_admin.get("/admin/audit/auditentry/").content.decode()
    assert f'href="?actor=staff%3A{staff.pk}"' in page, "each entry's actor links to that actor's entries"


def test_the_actor_filter_has_an_index_behind_it(tenant, staff, record_events):
    from django.db import connection, transaction

    from audit.admin import ActorFilter

    record_events(tenant, 1)
    for value in ("staff", f"staff:{staff.pk}"):
        queryset = ActorFilter(None, {"actor": [value]}, AuditEntry, None).queryset(None, AuditEntry.objects.all())
        sql, params = queryset.order_by("-id").query.sql_with_params()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "audit_actor" in plan, plan


@pytest.mark.parametrize("who", ["operator_admin", "staff_admin"])
def test_the_trail_never_counts_or_reads_the_whole_table(request, who, tenant, record_events):
    """The event type's choices come from the registry, not SELECT DISTINCT; a count stops at the cap."""
    client = request.getfixturevalue(who)
    record_events(tenant, 2)
    for params in ({}, {"event_type__exact": "inventory.stock_adjusted"}, {"actor": "system"}):
        assert_no_whole_table_reads(list_queries(client, "/admin/audit/auditentry/", params))
    page = client.get("/admin/audit/auditentry/").content.decode()
    assert "?event_type__exact=order.placed" in page, "a registered type is offered before any entry has it"
