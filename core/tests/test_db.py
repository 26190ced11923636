"""Maintenance commands may lift the statement timeout for their own work, and only for it."""

import pytest
from django.db import connection

from core.db import long_statements_allowed

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
