"""The read side on a real streaming replica (`DATABASE_REPLICA_URL`).

A private primary (`initdb`) and its standby (`pg_basebackup -R`) on free ports, both with
`pg_stat_statements`, serve this process for the module: the standby's own statistics show which
reads it answered. Read-side requests land there; a paused replay makes them fall back to the
primary once the lag passes the limit, and a stopped standby costs only the fallback.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from rest_framework.test import APIClient

from analytics.tests.helpers import OrderStory, line, project
from core.replica import REPLICA, forget_replica_status, reads_from_replica, replica_status
from core.testing import unavailable
from tenants.models import Tenant
from tenants.services import token_issue
from tenants.tests.factories import TenantFactory, UserFactory
from testsupport.database import copy_into, served_by
from testsupport.postgres import PostgresCluster, missing_postgres_programs
from testsupport.processes import wait_until

DASHBOARD = "/api/v1/dashboard/"
EVENTS = "/api/v1/events/"
# Small and quick: these servers hold a few hundred rows.
SERVER = {
    "shared_buffers": "16MB",
    "max_connections": "40",
    "synchronous_commit": "on",
    "shared_preload_libraries": "pg_stat_statements",
}


class Servers:
    def __init__(self, base: Path) -> None:
        self.primary = PostgresCluster(base, name="primary", database="shelfwise", settings=SERVER)
        self.standby = PostgresCluster(base, name="standby", database="shelfwise", settings=SERVER)

    def sql(self, server: PostgresCluster, statement: str, *params: object) -> list[tuple]:
        with psycopg.connect(server.url, autocommit=True) as conn:
            return conn.execute(statement, params).fetchall()

    def calls(self, server: PostgresCluster, table: str) -> int:
        """How many statements on `table` the server has run (its pg_stat_statements)."""
        [(n,)] = self.sql(
            server,
            "SELECT coalesce(sum(calls), 0)::int FROM pg_stat_statements WHERE query LIKE %s",
            f'%"{table}"%',
        )
        return n

    def caught_up(self) -> None:
        [(position,)] = self.sql(self.primary, "SELECT pg_current_wal_insert_lsn()::text")
        wait_until(
            lambda: self.sql(self.standby, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", position)[0][0],
            # A loaded machine (the whole suite in parallel) delays replay by seconds; no speed is tested here.
            timeout=60,
            what="the standby to replay the primary's writes",
        )

    def replay_paused(self, paused: bool) -> None:
        self.sql(self.standby, "SELECT pg_wal_replay_pause()" if paused else "SELECT pg_wal_replay_resume()")


@pytest.fixture(scope="module")
def servers(django_db_setup, django_db_blocker) -> Iterator[Servers]:
    missing = missing_postgres_programs("initdb", "pg_ctl", "pg_basebackup", "pg_dump", "psql")
    if missing:
        unavailable(f"the replica tests need {', '.join(missing)}")
    base = Path(tempfile.mkdtemp(prefix="shelfwise-replica-"))
    base.chmod(0o755)  # the postgres user must reach its folders; nothing secret in them
    found = Servers(base)
    try:
        with django_db_blocker.unblock():
            found.primary.init()
            copy_into(found.primary)
            found.primary.psql_command("shelfwise", "CREATE EXTENSION pg_stat_statements")
            found.standby.init_standby_of(found.primary)
            with served_by(found.primary, found.standby):
                yield found
    finally:
        found.standby.stop()
        found.primary.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def shop(servers):
    """A bookstore with a few orders on the primary, projected, and its staff's clients."""
    tenant = TenantFactory(slug=f"replica-{uuid.uuid4().hex[:8]}")
    staff = UserFactory(tenant=tenant, username=f"staff-{tenant.slug}", is_staff=True)
    stories = [OrderStory(tenant, line("BOOK-1", 2, "12.50")).placed().confirmed() for _ in range(3)]
    project()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token_issue(user=staff).key}")
    admin = Client()
    admin.force_login(staff)
    return tenant, stories, api, admin


@pytest.fixture
def fresh_look(settings):
    """Every block looks at the replica anew, so a test sees each change of it at once."""
    settings.DATABASE_REPLICA_CHECK_INTERVAL = 0
    forget_replica_status()


def test_read_side_requests_are_answered_by_the_standby(servers, shop, fresh_look):
    tenant, stories, api, admin = shop
    servers.caught_up()
    reads = {
        DASHBOARD: "analytics_tenantmonth",
        EVENTS: "domain_events_storedevent",
        f"/api/v1/orders/{stories[0].order_id}/events/": "domain_events_storedevent",
        "/admin/": "analytics_tenantmonth",
        "/admin/domain_events/storedevent/": "domain_events_storedevent",
    }
    for url, table in reads.items():
        on_standby, on_primary = servers.calls(servers.standby, table), servers.calls(servers.primary, table)
        response = (admin if url.startswith("/admin/") else api).get(url)
        assert response.status_code == 200, url
        assert servers.calls(servers.standby, table) > on_standby, f"{url} did not read {table} on the standby"
        assert servers.calls(servers.primary, table) == on_primary, f"{url} read {table} on the primary"

    body = api.get(DASHBOARD).json()
    assert body["orders_this_month"] == 3
    assert body["revenue_this_month"] == "75.00"
    [(recorded,)] = servers.sql(
        servers.primary, "SELECT count(*) FROM domain_events_storedevent WHERE tenant_id = %s", tenant.id
    )
    assert len(api.get(EVENTS).json()["results"]) == recorded
    assert "0.0 s behind" in admin.get("/admin/").content.decode()


def test_writes_and_reads_in_a_transaction_stay_on_the_primary(servers, shop, fresh_look, settings):
    tenant, _stories, api, _admin = shop
    settings.DATABASE_REPLICA_MAX_LAG = 3600  # the paused standby serves reads all along
    servers.caught_up()
    servers.replay_paused(True)
    try:
        # Placed a moment ago, so the standby (paused here) does not know it yet: its timeline
        # still answers, from the primary.
        story = OrderStory(tenant, line("BOOK-2", 1, "8.00")).placed()
        response = api.get(f"/api/v1/orders/{story.order_id}/events/")
        assert response.status_code == 200
        assert response.json()["results"][0]["type"] == "order.placed"

        # Inside a transaction of the primary, a read sees what the transaction wrote.
        with reads_from_replica() as server:
            assert server == REPLICA
            with transaction.atomic():
                Tenant.objects.filter(pk=tenant.pk).update(name="Renamed")
                assert Tenant.objects.get(pk=tenant.pk).name == "Renamed"
            # Outside it, the standby (paused) still has the old name: the read went there.
            assert Tenant.objects.get(pk=tenant.pk).name == tenant.name

        # A change page reads what it is about to change, on the primary.
        root = UserFactory(username=f"root-{tenant.slug}", tenant=None, is_staff=True, is_superuser=True)
        operator, onlooker = Client(), Client()
        operator.force_login(root)
        onlooker.force_login(root)
        on_standby = servers.calls(servers.standby, "tenants_tenant")
        page = operator.get(f"/admin/tenants/tenant/{tenant.pk}/change/")
        assert page.status_code == 200
        assert "Renamed" in page.content.decode()
        assert servers.calls(servers.standby, "tenants_tenant") == on_standby

        # After a save, the list shown next includes it, though the standby does not have it yet;
        # a client that wrote nothing is served by the standby.
        form = {"slug": tenant.slug, "currency": tenant.currency, "timezone": tenant.timezone, "_save": "Save"}
        saved = operator.post(f"/admin/tenants/tenant/{tenant.pk}/change/", {**form, "name": "Saved in the admin"})
        assert saved.status_code == 302
        operator.get(saved.url)  # the message that names the change, shown once
        assert "Saved in the admin" in operator.get("/admin/tenants/tenant/").content.decode()
        assert "Saved in the admin" not in onlooker.get("/admin/tenants/tenant/").content.decode()
    finally:
        servers.replay_paused(False)
    project()


def test_a_paused_replay_sends_reads_to_the_primary_once_it_lags_past_the_limit(servers, shop, fresh_look, settings):
    tenant, _stories, api, admin = shop
    project()
    servers.caught_up()
    before = api.get(DASHBOARD).json()
    servers.replay_paused(True)
    try:
        OrderStory(tenant, line("BOOK-3", 1, "5.00")).placed().confirmed()
        project()
        newest = servers.sql(servers.primary, "SELECT max(position) FROM domain_events_storedevent")[0][0]

        # Within the limit, the standby answers: its figures and the position they include, together.
        settings.DATABASE_REPLICA_MAX_LAG = 3600
        within = api.get(DASHBOARD).json()
        assert (within["position"], within["orders_this_month"]) == (before["position"], before["orders_this_month"])

        # Past it, the primary answers, with the newest figures and their position.
        settings.DATABASE_REPLICA_MAX_LAG = 0.3
        wait_until(lambda: replica_status(fresh=True).lag > 0.3, timeout=10, what="the standby to lag")
        on_standby = servers.calls(servers.standby, "analytics_tenantmonth")
        past = api.get(DASHBOARD).json()
        assert (past["position"], past["orders_this_month"]) == (newest, before["orders_this_month"] + 1)
        assert servers.calls(servers.standby, "analytics_tenantmonth") == on_standby

        metrics = Client().get("/metrics").content.decode()
        assert "shelfwise_replica_up 1.0" in metrics
        assert "shelfwise_replica_serving 0.0" in metrics
        lag = next(
            float(ln.split()[1]) for ln in metrics.splitlines() if ln.startswith("shelfwise_replica_lag_seconds")
        )
        assert lag > 0.3
        assert "behind: reads go to the primary" in admin.get("/admin/").content.decode()
    finally:
        servers.replay_paused(False)

    servers.caught_up()
    caught_up = api.get(DASHBOARD).json()
    assert caught_up["position"] == newest
    assert "shelfwise_replica_serving 1.0" in Client().get("/metrics").content.decode()


def test_a_stopped_standby_costs_only_the_fallback(servers, shop, settings):
    _tenant, stories, api, admin = shop
    servers.caught_up()
    # The last look found the standby well; it stops before the next one.
    settings.DATABASE_REPLICA_CHECK_INTERVAL = 3600
    assert replica_status(fresh=True).usable
    servers.standby.stop()
    try:
        expected = api.get(f"/api/v1/orders/{stories[0].order_id}/events/")
        assert expected.status_code == 200, "a read that failed on the standby runs again on the primary"
        assert replica_status().reachable is False
        for url in (DASHBOARD, EVENTS, f"/api/v1/orders/{stories[1].order_id}/events/"):
            assert api.get(url).status_code == 200, url
        assert admin.get("/admin/domain_events/storedevent/").status_code == 200
        assert "down: reads go to the primary" in admin.get("/admin/").content.decode()
        metrics = Client().get("/metrics").content.decode()
        assert "shelfwise_replica_up 0.0" in metrics
    finally:
        servers.standby.start()
        forget_replica_status()


def test_checking_and_rebuilding_projections_replay_the_events_from_the_standby(servers, shop, fresh_look, capsys):
    project()
    servers.caught_up()
    on_standby = servers.calls(servers.standby, "domain_events_storedevent")
    call_command("check_projections", "analytics.sales")
    assert "analytics.sales: equal at position" in capsys.readouterr().out
    checked = servers.calls(servers.standby, "domain_events_storedevent")
    assert checked > on_standby, "the check's replay did not read the events on the standby"

    call_command("rebuild_projections", "analytics.sales")
    assert "analytics.sales: rebuilt from" in capsys.readouterr().out
    assert servers.calls(servers.standby, "domain_events_storedevent") > checked
