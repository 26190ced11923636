"""What the tests of the admin's big lists look at: the statements a list page sends, and the plan
PostgreSQL makes for one of them."""

from __future__ import annotations

from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from domain_events.admin_lists import COUNT_CAP


def list_queries(client: Client, url: str, params: dict | None = None) -> list[str]:
    """The SQL of every statement one fetch of `url` sends."""
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params or {})
    assert response.status_code == 200, (url, params, response.status_code)
    return [q["sql"] for q in captured.captured_queries]


def assert_no_whole_table_reads(statements: list[str]) -> None:
    """No SELECT DISTINCT for a filter's choices, and every count stops at the paginator's cap."""
    for sql in statements:
        assert "DISTINCT" not in sql.upper(), sql
        if "COUNT(" in sql.upper():
            assert f"LIMIT {COUNT_CAP + 1}" in sql, sql


def rows_query(statements: list[str], table: str) -> str:
    """The statement that reads the page's rows of `table` (the one in the list's order)."""
    found = [sql for sql in statements if f'FROM "{table}"' in sql and "ORDER BY" in sql and "DISTINCT" not in sql]
    assert len(found) == 1, statements
    return found[0]


def plan_without_sorting(sql: str) -> str:
    """EXPLAIN of `sql` with sequential scans and sorts priced out, as on a table of millions of
    rows: what remains is the index that keeps the list's order, if there is one."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(f"EXPLAIN {sql}")
        return "\n".join(row[0] for row in cursor.fetchall())
