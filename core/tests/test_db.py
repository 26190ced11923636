"""Database helpers: the statement timeout lifted for maintenance work only, and a row inserted
unless its key is taken."""

from datetime import UTC, datetime

import pytest
from django.db import connection, transaction
from django.db.models import Value
from django.db.models.expressions import DatabaseDefault
from django.test.utils import CaptureQueriesContext

from core.db import get_or_insert, insert_rows, long_statements_allowed
from core.models import IdempotencyKey

pytestmark = pytest.mark.django_db


def timeout() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        return cursor.fetchone()[0]


def test_the_statement_timeout_is_lifted_for_the_block_and_put_back_after():
    configured = timeout()
    assert configured != "0"
    with long_statements_allowed():
        assert timeout() == "0"
    assert timeout() == configured


def test_the_product_connections_never_compile_statements_with_jit():
    """Over monthly partitions a claim's estimated cost passes `jit_above_cost`; compiling it took
    about a second where the statement runs in a millisecond or two, so JIT is off."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"


CREATED = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_get_or_insert_writes_a_new_row_in_one_statement_with_its_drawn_key(customer):
    with CaptureQueriesContext(connection) as queries:
        row, created = get_or_insert(
            IdempotencyKey, user=customer, key="k-1", defaults={"fingerprint": "f" * 64, "created_at": CREATED}
        )
    assert created is True
    assert len(queries) == 1, [q["sql"] for q in queries.captured_queries]
    stored = IdempotencyKey.objects.get(user=customer, key="k-1")
    assert row.pk == stored.pk is not None
    assert (stored.fingerprint, stored.state, stored.created_at) == ("f" * 64, "in_progress", CREATED)
    assert row._state.adding is False


def test_get_or_insert_returns_the_row_already_there_and_changes_nothing(customer):
    first, _ = get_or_insert(
        IdempotencyKey, user=customer, key="k-1", defaults={"fingerprint": "a" * 64, "created_at": CREATED}
    )
    again, created = get_or_insert(
        IdempotencyKey, user=customer, key="k-1", defaults={"fingerprint": "b" * 64, "created_at": CREATED}
    )
    assert created is False
    assert again.pk == first.pk
    assert again.fingerprint == "a" * 64
    assert IdempotencyKey.objects.filter(user=customer).count() == 1


def test_get_or_insert_leaves_the_callers_transaction_usable_after_a_conflict(customer):
    """A conflict is no error: the surrounding transaction goes on without a savepoint."""
    with transaction.atomic():
        get_or_insert(IdempotencyKey, user=customer, key="k-1", defaults={"fingerprint": "a", "created_at": CREATED})
        get_or_insert(IdempotencyKey, user=customer, key="k-1", defaults={"fingerprint": "b", "created_at": CREATED})
        _, created = get_or_insert(
            IdempotencyKey, user=customer, key="k-2", defaults={"fingerprint": "c", "created_at": CREATED}
        )
    assert created is True
    assert sorted(IdempotencyKey.objects.values_list("key", "fingerprint")) == [("k-1", "a"), ("k-2", "c")]


def test_insert_rows_writes_every_row_in_one_statement_and_sets_their_drawn_keys(customer):
    rows = [IdempotencyKey(user=customer, key=f"k-{n}", fingerprint=str(n), created_at=CREATED) for n in range(3)]
    with CaptureQueriesContext(connection) as queries:
        written = insert_rows(rows)
    assert len(queries) == 1
    assert written == rows
    stored = dict(IdempotencyKey.objects.filter(user=customer).values_list("key", "pk"))
    assert stored == {row.key: row.pk for row in rows}
    assert all(row.pk is not None and row._state.adding is False for row in rows)


def test_insert_rows_with_a_drawn_key_refuses_to_leave_conflicts_out(customer):
    with pytest.raises(ValueError, match="drawn key"):
        insert_rows(
            [IdempotencyKey(user=customer, key="k", fingerprint="f", created_at=CREATED)], ignore_conflicts=True
        )
    assert not IdempotencyKey.objects.exists()


def test_insert_rows_leaves_a_conflicting_row_alone_and_writes_the_others(tenant):
    """Rows whose key is theirs (not drawn): the one already there keeps what it had."""
    Tenant = type(tenant)
    clash = Tenant(pk=tenant.pk, slug="clash", name="Clash", currency="EUR")
    other = Tenant(slug="second-shop", name="Second Shop", currency="USD")
    with CaptureQueriesContext(connection) as queries:
        written = insert_rows([clash, other], ignore_conflicts=True)
    assert len(queries) == 1
    assert written == [other]
    tenant.refresh_from_db()
    assert (tenant.slug, tenant.currency) == ("tenant-a", "USD")
    assert Tenant.objects.filter(pk=other.pk, slug="second-shop").exists()
    assert not Tenant.objects.filter(slug="clash").exists()


def test_insert_rows_refuses_a_value_left_to_its_database_default_and_writes_nothing(customer):
    row = IdempotencyKey(user=customer, key="k", fingerprint=DatabaseDefault(Value("f")), created_at=CREATED)
    with pytest.raises(ValueError, match="database default"):
        insert_rows([row])
    assert not IdempotencyKey.objects.exists()


def test_insert_rows_sends_one_array_per_column_whatever_the_number_of_rows(customer):
    """The same text for 3 rows and for 60, with as many values as columns: psycopg keeps its parse
    of a text under 4 KiB and 50 values, which one VALUES row per row soon is not. Each row still
    gets its own drawn key, in order."""
    texts, casts, unnest = set(), set(), []
    for size, prefix in ((3, "a"), (60, "b")):
        rows = [
            IdempotencyKey(user=customer, key=f"{prefix}-{n}", fingerprint=str(n), created_at=CREATED)
            for n in range(size)
        ]
        with CaptureQueriesContext(connection) as queries:
            insert_rows(rows)
        (query,) = queries.captured_queries
        texts.add(query["sql"].split(" SELECT ")[0])
        casts.add(query["sql"].count("::"))  # one cast an array, however long
        unnest.append("SELECT * FROM UNNEST(" in query["sql"])
        stored = dict(IdempotencyKey.objects.filter(key__startswith=f"{prefix}-").values_list("key", "pk"))
        assert stored == {row.key: row.pk for row in rows}
    assert len(texts) == 1
    assert len(casts) == 1
    assert unnest == [True, True]
