"""A worker keeps a good database connection from one task to the next and drops a bad one."""

import pytest
from django.db import connection

from config.celery import app, keep_only_usable_connections
from webhooks.tasks import send_webhook

pytestmark = pytest.mark.django_db(transaction=True)


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_celery_leaves_the_connections_to_the_project():
    """Without it Celery's Django fix-up closes every connection around every task."""
    assert app.conf.get("CELERY_DB_REUSE_MAX")


def test_a_worker_outlasts_a_broker_outage():
    assert app.conf.broker_connection_retry is True
    assert app.conf.broker_connection_max_retries is None, "Celery's default gives up after 100 attempts"
    assert app.conf.broker_url.startswith("redis://")
    assert app.conf.broker_transport_options["socket_keepalive"] is True


def test_a_good_connection_serves_the_next_task_and_one_left_in_a_transaction_is_closed():
    task = send_webhook
    before = backend_pid()
    keep_only_usable_connections(task=task)
    assert backend_pid() == before

    connection.set_autocommit(False)  # as a task that died in the middle of a transaction leaves it
    keep_only_usable_connections(task=task)
    assert connection.connection is None
    assert backend_pid() != before
