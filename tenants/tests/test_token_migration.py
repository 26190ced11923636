"""The migration to hashed tokens: a token issued in clear before it keeps working, and its clear
key is gone from the database."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from rest_framework.test import APIClient

from tenants.models import ApiToken, token_key_hash

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE, AFTER = [("tenants", "0001_initial")], [("tenants", "0002_api_tokens_hashed")]
KEY = "0123456789abcdef0123456789abcdef01234567"


def migrate(targets) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def migrate_everything() -> None:
    """Back to the latest state of every app: going back to `BEFORE` also unapplied the migrations
    of other apps that depend on a later one of `tenants`."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_a_token_stored_in_clear_before_the_migration_keeps_working_after_it(customer):
    migrate(BEFORE)
    try:
        with connection.cursor() as cursor:
            # DRF's authtoken table, as it stood before this migration.
            cursor.execute(
                "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamptz NOT NULL,"
                " user_id uuid NOT NULL UNIQUE)"
            )
            cursor.execute("INSERT INTO authtoken_token VALUES (%s, now(), %s)", [KEY, customer.pk])
        migrate(AFTER)
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM authtoken_token")
            assert cursor.fetchone()[0] == 0
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS authtoken_token")
        migrate_everything()
    assert ApiToken.objects.get(user=customer).key_hash == token_key_hash(KEY)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {KEY}")
    assert client.get("/api/v1/products/").status_code == 200
