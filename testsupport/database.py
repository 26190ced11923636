"""A transaction writing events held open in another session, for tests of what waits for one."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from django.db import connection, transaction


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
