"""The test database from other angles: a transaction writing events held open in another session,
for tests of what waits for one; this process served by private servers (a primary and its replica)."""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Iterator

from django.core.management import call_command
from django.db import connection, connections, transaction
from django.db.backends.base.creation import TEST_DATABASE_PREFIX

from core.replica import forget_replica_status
from domain_events.head import FENCE
from testsupport.postgres import PostgresCluster, postgres_bin


@contextlib.contextmanager
def open_writing_transaction() -> Iterator[int]:
    """Hold a transaction open in another session, with the events table's write lock that every
    insert of an event takes, while the block runs; yields that session's backend pid."""
    opened, done = threading.Event(), threading.Event()
    pid: list[int] = []

    def hold() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("LOCK TABLE domain_events_storedevent IN ROW EXCLUSIVE MODE")
                pid.append(connection.connection.info.backend_pid)
                opened.set()
                done.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert opened.wait(10), "the other session did not open its transaction"
        yield pid[0]
    finally:
        done.set()
        thread.join(10)


def copy_into(cluster: PostgresCluster) -> None:
    """Give `cluster`'s database the test database's schema and rows: a copy with pg_dump and
    psql when the test database is set up (a session with database tests), else migrations."""
    db = connection.settings_dict
    if not db["NAME"].startswith(TEST_DATABASE_PREFIX):
        with served_by(cluster):
            call_command("migrate", verbosity=0)
        return
    source = ["-h", db["HOST"] or "127.0.0.1", "-p", str(db["PORT"] or 5432), "-U", db["USER"] or "postgres"]
    dump = subprocess.Popen(
        [postgres_bin("pg_dump") or "pg_dump", *source, "--no-owner", "--no-privileges", db["NAME"]],
        stdout=subprocess.PIPE,
    )
    restore = subprocess.run(
        [postgres_bin("psql") or "psql", "-XqAt", "-v", "ON_ERROR_STOP=1", cluster.url],
        stdin=dump.stdout,
        capture_output=True,
        text=True,
        check=False,
    )
    dump.stdout.close()
    assert dump.wait() == 0, "pg_dump of the test database failed"
    assert restore.returncode == 0, f"restoring the test database failed: {restore.stderr}"


@contextlib.contextmanager
def served_by(primary: PostgresCluster, replica: PostgresCluster | None = None) -> Iterator[None]:
    """Point this process's `default` database at `primary`, and a `replica` alias at `replica`
    (as `DATABASE_REPLICA_URL` would), for the block; then back to the test database."""
    default = connections["default"]
    saved = dict(default.settings_dict)
    connections.close_all()
    default.settings_dict.update(HOST="127.0.0.1", PORT=str(primary.port), NAME=primary.database)
    if replica is not None:
        connections.settings["replica"] = {
            **default.settings_dict,
            "PORT": str(replica.port),
            "NAME": replica.database,
            "OPTIONS": {**default.settings_dict.get("OPTIONS", {}), "connect_timeout": 2},
            "CONN_HEALTH_CHECKS": True,
        }
    FENCE.reset()
    forget_replica_status()
    try:
        yield
    finally:
        connections.close_all()
        if "replica" in connections.settings:
            del connections.settings["replica"]
            with contextlib.suppress(AttributeError):
                del connections["replica"]
        default.settings_dict.clear()
        default.settings_dict.update(saved)
        FENCE.reset()
        forget_replica_status()
