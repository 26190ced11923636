"""The position readers' lag during a chaos run: sampled once a second from the run's own
process (`domain_events.reader_lag.lags()`, `domain_events.head.oldest_writer()`), and the relays'
warnings about a writing transaction that holds the readers back (`OUTBOX_READER_HELD_WARNING`)."""

from __future__ import annotations

import re
import threading
from pathlib import Path

HELD = re.compile(r"position readers are held at \d+ for (\d+) s: .*?: (.*)$")


class LagSampler(threading.Thread):
    def __init__(self, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.done = threading.Event()
        self.samples = 0
        self.errors = 0
        self.last_error = ""
        # The slowest reader seen, and the oldest open writing transaction at that moment.
        self.slowest: dict = {"seconds": 0.0, "reader": "", "positions": 0, "writer": "", "writer_age": 0.0}
        self.oldest_writer: dict = {"age": 0.0, "writer": ""}

    def run(self) -> None:
        from django.db import connection

        from domain_events.head import oldest_writer
        from domain_events.reader_lag import lags

        while not self.done.wait(self.interval):
            try:
                writer, age = oldest_writer()
                named = self._describe(connection, writer)
                if age > self.oldest_writer["age"]:
                    self.oldest_writer = {"age": round(age, 1), "writer": named}
                for lag in lags():
                    if lag.seconds > self.slowest["seconds"]:
                        self.slowest = {
                            "seconds": round(lag.seconds, 1),
                            "reader": lag.name,
                            "positions": lag.positions,
                            "writer": named,
                            "writer_age": round(age, 1),
                        }
                self.samples += 1
            except Exception as exc:  # PostgreSQL restarting: the next sample reconnects
                self.errors += 1
                self.last_error = repr(exc)[:300]
                connection.close()
        connection.close()

    @staticmethod
    def _describe(connection, writer) -> str:
        if writer is None:
            return ""
        query = ""
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT left(query, 160) FROM pg_stat_activity WHERE pid = %s", [writer.pid])
                row = cursor.fetchone()
                query = row[0] if row else ""
        except Exception:
            connection.close()
        return f"pid {writer.pid} ({writer.application_name or 'no application_name'}): {query}"

    def stop(self) -> None:
        self.done.set()
        self.join(10)


def held_warnings(logs: Path) -> dict:
    """The relays' "position readers are held" warnings: how many, and the longest with what held it."""
    count, longest, what = 0, 0, ""
    for path in sorted(logs.glob("*.log")):
        with path.open(errors="replace") as f:
            for line in f:
                match = HELD.search(line)
                if match is None:
                    continue
                count += 1
                if int(match.group(1)) >= longest:
                    longest, what = int(match.group(1)), f"{path.stem}: {match.group(2).strip()[:300]}"
    return {"warnings": count, "longest_seconds": longest, "held_by": what}
