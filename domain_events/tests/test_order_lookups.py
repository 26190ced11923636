"""The two functions the executor's lock statements ask what holds a delivery back (migration
0019): their plans last the session, so a plan made while the tables were empty must still probe
the indexes once the tables have grown."""

import uuid

import pytest
from django.db import connection

from domain_events.models import Delivery

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_blocker_function_counts_the_statuses_the_model_counts_as_blocking_and_open():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_functiondef('domain_events_blocker'::regproc)")
        body = cursor.fetchone()[0]
    blocking = ", ".join(f"'{s}'" for s in Delivery.BLOCKING)
    still_open = ", ".join(f"'{s}'" for s in Delivery.OPEN)
    assert f"o.status IN ({blocking})" in body
    assert f"o.status IN ({still_open})" in body


def plans_of_nested_statements(calls: list[tuple[str, list]]) -> list[str]:
    """The plan of every statement run inside the functions `calls` call, as `auto_explain`
    reports them."""
    plans: list[str] = []
    connection.ensure_connection()
    raw = connection.connection

    def keep(notice) -> None:
        plans.append(notice.message_primary)

    raw.add_notice_handler(keep)
    try:
        with connection.cursor() as cursor:
            cursor.execute("LOAD 'auto_explain'")
            for setting, value in (
                ("auto_explain.log_min_duration", "0"),
                ("auto_explain.log_nested_statements", "on"),
                ("auto_explain.log_level", "notice"),
                ("client_min_messages", "notice"),
            ):
                cursor.execute("SELECT set_config(%s, %s, false)", [setting, value])
            for statement, params in calls:
                cursor.execute(statement, params)
            cursor.execute("SELECT set_config('auto_explain.log_min_duration', '-1', false)")
    finally:
        raw.remove_notice_handler(keep)
    return [p for p in plans if "domain_events_" in p]


def test_plans_made_on_empty_tables_probe_the_indexes_on_every_later_call():
    """PostgreSQL keeps a generic plan after five calls. Made on empty tables, a sequential scan
    would be cheapest, and would stay so as the tables grow: the functions rule it out."""
    assert not Delivery.objects.exists()
    calls: list[tuple[str, list]] = []
    for n in range(8):
        aggregate, handler = uuid.uuid4(), f"h{n}"
        calls.append(
            ("SELECT * FROM domain_events_blocker(%s, %s, 5, ARRAY[1]::bigint[], NULL, false)", [aggregate, handler])
        )
        calls.append(("SELECT domain_events_uncovered(%s, %s, 5, 5)", [handler, aggregate]))
    plans = plans_of_nested_statements(calls)
    blocker = [p for p in plans if "o.next_attempt_at" in p]
    uncovered = [p for p in plans if "SELECT pe.id" in p]
    assert len(blocker) == 8
    assert len(uncovered) == 8
    # The last calls run the generic plan ($1, $2 …), which the session keeps.
    assert "$1" in blocker[-1]
    assert "$1" in uncovered[-1]
    # Each probes its index by the aggregate: an index read whole, its conditions left to a
    # filter, would be as wrong as a sequential scan.
    for plan in blocker:
        assert "Seq Scan" not in plan
        assert "aggregate_id_handler_revision" in plan
        assert "Index Cond: ((aggregate_id = " in plan
    for plan in uncovered:
        assert "Seq Scan" not in plan
        assert "aggregate_id_position" in plan
        assert "Index Cond: ((aggregate_id = " in plan
        assert "Index Cond: ((stored_event_id = pe" in plan
        # An event's deliveries are read on the (event, handler, month) key, never on the
        # handler's index, which holds every delivery of the handler.
        assert "stored_event_id_handler" in plan
        assert "handler_id_idx" not in plan
