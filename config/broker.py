"""The embedded broker of `make run`: kombu's filesystem transport, with short waits.

A Celery worker on a transport like this one (no event loop) looks for a shutdown only between two
waits for a message, of 2 s each, and waits once more after it sees one; so Ctrl-C stopped it
after up to 4 s, close to the 5 s after which honcho kills what still runs. Here a wait lasts at
most `WAIT` seconds, and the worker stops within about a second.
"""

from __future__ import annotations

from kombu.transport.filesystem import Transport as FilesystemTransport

WAIT = 0.25


class Transport(FilesystemTransport):
    def drain_events(self, connection, timeout: float | None = None) -> None:
        # No timeout means "until a message comes", which callers other than the worker rely on.
        return super().drain_events(connection, timeout=timeout if timeout is None else min(timeout, WAIT))
