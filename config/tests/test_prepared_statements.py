"""Statements bound and prepared by the server (`DATABASE_PREPARE_THRESHOLD`, docs/settings.md)."""

import subprocess
import sys
from uuid import uuid4

import pytest
from django.db import connection

from testsupport.processes import ROOT

QUERY = "SELECT count(*) FROM domain_events_storedevent WHERE tenant_id = %s"


def prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db
def test_a_statement_run_often_on_a_connection_is_prepared_there_with_its_parameters_bound_by_the_server():
    with connection.cursor() as cursor:
        for _ in range(3):
            cursor.execute(QUERY, [uuid4()])
    assert not [s for s in prepared_statements() if "domain_events_storedevent" in s], "not on its first runs"

    with connection.cursor() as cursor:
        for _ in range(5):
            cursor.execute(QUERY, [uuid4()])
            assert cursor.fetchone() == (0,)
    prepared = [s for s in prepared_statements() if "domain_events_storedevent" in s]
    assert prepared == ["SELECT count(*) FROM domain_events_storedevent WHERE tenant_id = $1"]


@pytest.mark.parametrize(("value", "expected"), [("none", "True None"), ("", "True None"), ("2", "True 2")])
def test_none_turns_preparing_off_for_a_pooler_and_binding_stays_on_the_server(value, expected):
    code = (
        "import django; django.setup(); from django.conf import settings; o = settings.DATABASES['default']['OPTIONS'];"
        " print(o['server_side_binding'], o['prepare_threshold'])"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "true",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/shelfwise",
        "DATABASE_PREPARE_THRESHOLD": value,
    }
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected
