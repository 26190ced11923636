"""The relay loop: hands on every delivery that is due (lost dispatch, expired lease, retry).

Each pass: write the deliveries that publishers without a handler left out (late subscribers,
when the set of subscribers may have changed), catch the position readers up, run in-process
deliveries and send Celery ones, and now and then prune. It wakes on PostgreSQL LISTEN/NOTIFY and
polls as a fallback; a lost LISTEN connection is re-established with backoff for as long as the
relay runs. A running relay moves its position readers in a thread of their own, on their own
connection: it looks at the readers' head every `READER_POLL_INTERVAL` and moves them when it has
moved, so a batch of deliveries never keeps the dashboard waiting.
Several relays run side by side: claims are short leases or row locks taken with SKIP LOCKED.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable

import psycopg
from django.db import connection

from domain_events import retention, sql, subscribers, tracking
from domain_events.celery_claims import claim_for_workers
from domain_events.conf import domain_events_settings
from domain_events.executor import Report, run_due_here
from domain_events.fastpath import hand_on, hand_on_follow_ups
from domain_events.head import FENCE, head
from domain_events.probes import send_probes
from domain_events.subscriptions import Mode, subscriptions

logger = logging.getLogger(__name__)

PRUNE_EVERY = 60.0
# Late subscribers are covered on a relay's first pass and when a process records its handlers
# (its NOTIFY). Without a LISTEN connection (SQLite, or while it is lost) the relay cannot hear
# that, and covers every `COVER_EVERY` seconds. `COVER_BACKSTOP`: a publisher on older code that
# outlives the last new process of a rolling deploy still publishes without the new handlers.
COVER_EVERY = 1.0
COVER_BACKSTOP = 60.0
LISTEN_BACKOFF_MAX = 30.0
# How soon an idle relay looks at the head again while a fence waits (`head.Fence`), or after its
# position readers applied events (publishers usually drew more meanwhile).
FENCE_RECHECK = 0.005


# `Relay._wait`: no delivery work, but the position readers may have some.
READERS = object()


class Relay:
    def __init__(
        self,
        *,
        batch_size: int | None = None,
        poll_interval: float | None = None,
        on_report: Callable[[Report], None] | None = None,
    ) -> None:
        conf = domain_events_settings()
        self.batch_size = batch_size or conf["RELAY_BATCH_SIZE"]
        self.poll_interval = poll_interval if poll_interval is not None else conf["RELAY_POLL_INTERVAL"]
        self.channel = conf["NOTIFY_CHANNEL"]
        self.gather: float = conf["RELAY_GATHER"]
        self.reader_poll: float = conf["READER_POLL_INTERVAL"]
        self.on_report = on_report
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._stopping = False
        self._listener: psycopg.Connection | None = None
        self._listen_retry_at = 0.0
        self._listen_backoff = 0.0
        self._last_prune = 0.0
        self._last_cover = 0.0
        self._cover_due = True  # the first pass covers; then a process that records its handlers asks
        self._last_drain = 0.0
        self.readers_behind = False
        self._readers_at: int | None = None
        self._readers_applied = False
        self._readers_thread: threading.Thread | None = None

    # --- one pass -----------------------------------------------------------------------------

    def drain(self) -> Report:
        """Hand on everything due now: cover late subscribers, catch position readers up, then
        run and send batches of deliveries until nothing is due."""
        if subscribers.register_once():
            self._cover_due = True
        since = time.monotonic() - self._last_cover
        if self._cover_due or since >= COVER_BACKSTOP or (self._listener is None and since >= COVER_EVERY):
            self._cover_due = False
            subscribers.cover()
            self._last_cover = time.monotonic()
        readers_here = self._readers_thread is None and bool(subscriptions.trackers())
        readers_behind = readers_here and self._advance_readers()
        total = Report()
        local = subscriptions.names(Mode.ON_COMMIT)
        remote = [s for s in subscriptions.all() if s.mode is Mode.CELERY]
        while not self._stopping:
            report = hand_on_follow_ups(run_due_here(self.batch_size, local))
            full = report.handled >= self.batch_size
            if remote:
                claims, probes = claim_for_workers(self.batch_size, remote)
                if claims:
                    report.add(hand_on(claims, by_relay=True))
                if probes:
                    send_probes(probes)
                full = full or len(claims) >= self.batch_size
            total.add(report)
            if self.on_report and report.handled:
                self.on_report(report)
            if not full:
                break
        if total.handled and not readers_behind and readers_here:
            # What these handlers just recorded: the position readers take it now.
            readers_behind = self._advance_readers()
        self.readers_behind = readers_behind
        return total

    def _advance_readers(self, top: int | None = None) -> bool:
        """Move every position reader to the head; True when one is still behind it."""
        top = head() if top is None else top
        applied, behind = tracking.advance(top=top)
        self._readers_at = None if behind else top
        self._readers_applied = applied > 0
        return behind

    def prune(self) -> int:
        """Apply the retention rules (`retention.prune`); only one relay at a time does it."""
        return retention.prune()

    # --- long-running -------------------------------------------------------------------------

    def run(self) -> None:
        self._install_signal_handlers()
        subscribers.register()
        self._listen()
        logger.info("outbox relay %s started (batch %d, poll %.1fs)", self.name, self.batch_size, self.poll_interval)
        if subscriptions.trackers():
            self._readers_thread = threading.Thread(target=self._run_readers, name="position-readers", daemon=True)
            self._readers_thread.start()
        try:
            while not self._stopping:
                try:
                    self.drain()
                    self._last_drain = time.monotonic()
                    if time.monotonic() - self._last_prune > PRUNE_EVERY:
                        self.prune()
                        self._last_prune = time.monotonic()
                except Exception:
                    # A database restart or a network blip: keep the relay alive and try again.
                    logger.exception("relay pass failed; retrying")
                    connection.close()
                    time.sleep(self.poll_interval)
                # Position readers with a way to go get the next pass at once; otherwise wait for work.
                while not self._stopping and not self.readers_behind:
                    woken = self._wait()
                    if woken is READERS:
                        self._move_readers()
                    elif woken:
                        break
        finally:
            if self._readers_thread is not None:
                self._readers_thread.join(timeout=30)
            if self._listener is not None:
                self._listener.close()
            logger.info("outbox relay %s stopped", self.name)

    def _run_readers(self) -> None:
        """The position readers' own loop (a thread of a running relay, with its own database
        connection): look at the head every `READER_POLL_INTERVAL`, or after `FENCE_RECHECK` while a
        fence waits or when the readers just applied events, and move them when it moved. Of
        several relays, only the one holding the readers' lock does so; the others look once a poll
        interval."""
        last_full = 0.0
        leading = False
        try:
            while not self._stopping:
                # Relays side by side: the one whose thread holds the readers' lock moves them at
                # this pace, the others once a poll interval (in case it hangs) until one takes over.
                leading = leading or _lead_readers()
                # Once a poll interval every reader gets a pass whether the head moved or not: one
                # that failed is waiting for its retry time, and nothing new may come to wake it.
                full = time.monotonic() - last_full >= self.poll_interval
                behind = self._move_readers(full=full)
                leading = leading and behind is not None  # a failed pass closed the connection and the lock
                if full:
                    last_full = time.monotonic()
                if behind is None or not leading:
                    time.sleep(self.poll_interval)
                elif not behind:
                    soon = FENCE.pending() or self._readers_applied
                    time.sleep(FENCE_RECHECK if soon else self.reader_poll)
        finally:
            connection.close()

    def stop(self, *_: object) -> None:
        self._stopping = True

    def _install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def _listen(self) -> None:
        """Open the LISTEN connection; on failure, try again later with a growing backoff."""
        if connection.vendor != "postgresql":
            return
        try:
            params = connection.get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            self._listener = psycopg.connect(**params, autocommit=True, connect_timeout=5)
            self._listener.execute(sql.listen(self.channel))
            self._listen_backoff = 0.0
            self._cover_due = True  # what was said while nobody listened is lost
            logger.info("relay %s listening on %s", self.name, self.channel)
        except psycopg.Error:
            self._listener = None
            self._listen_backoff = min(LISTEN_BACKOFF_MAX, max(self.poll_interval, self._listen_backoff * 2))
            self._listen_retry_at = time.monotonic() + self._listen_backoff
            logger.warning("LISTEN failed; polling, next try in %.1fs", self._listen_backoff, exc_info=True)

    def _wait(self) -> bool | object:
        """Sleep until notified of delivery work or a look at the readers' head is due: True when
        a pass is due (delivery work, or the poll interval is over), `READERS` when only the
        position readers may have work, False when neither.

        With position readers the relay looks at the head every `READER_POLL_INTERVAL` (one cheap
        query), and after `FENCE_RECHECK` while a fence waits for open transactions or when the
        readers have just applied events; otherwise it sleeps for the poll interval. After a
        notification of delivery work the relay lingers for `RELAY_GATHER` seconds and swallows the
        notifications of that moment, so that busy publishers make batches, not a claim each.
        """
        readers = self._readers_thread is None and bool(subscriptions.trackers())
        timeout = min(self.poll_interval, self.reader_poll) if readers else self.poll_interval
        if readers and (FENCE.pending() or self._readers_applied):
            # Positions drawn but not yet final: look again soon, they usually are within milliseconds.
            # Or the readers just spent a while applying events: more were likely recorded meanwhile.
            timeout = min(timeout, FENCE_RECHECK)
        pass_due = time.monotonic() - self._last_drain + timeout >= self.poll_interval
        if self._listener is None:
            time.sleep(timeout)
            if connection.vendor == "postgresql" and time.monotonic() >= self._listen_retry_at:
                self._listen()
            return True if pass_due else READERS if readers else False
        try:
            payloads = {n.payload for n in self._listener.notifies(timeout=timeout, stop_after=1)}
            if payloads:
                if self.gather > 0:
                    time.sleep(self.gather)
                # What has arrived: a process that recorded its handlers may be among them.
                payloads |= {n.payload for n in self._listener.notifies(timeout=0, stop_after=10_000)}
        except psycopg.Error:
            logger.warning("lost the LISTEN connection; reconnecting", exc_info=True)
            with contextlib.suppress(psycopg.Error):
                self._listener.close()
            self._listener = None
            self._listen_retry_at = 0.0
            time.sleep(self.poll_interval)
            self._listen()
            return True
        if subscribers.SUBSCRIBERS_CHANGED in payloads:
            self._cover_due = True
        if payloads or pass_due:
            return True
        return READERS if readers else False

    def _move_readers(self, *, full: bool = False) -> bool | None:
        """Move the position readers if the head moved since they last reached it (with `full`,
        whether it moved or not): True when one is still behind it, None when the pass failed."""
        self._readers_applied = False
        behind = False
        try:
            # Open transactions with positions at or below the last drawn usually end within
            # milliseconds: wait for them (a reader poll interval at most), so that this pass takes
            # their events too rather than the next one, a whole pass later.
            top = FENCE.caught_up(self.reader_poll, every=FENCE_RECHECK)
            if full or top != self._readers_at:
                behind = self._advance_readers(top)
        except Exception:
            logger.exception("moving the position readers failed; retrying")
            connection.close()
            return None
        if self._readers_thread is None:
            self.readers_behind = behind
        return behind


def _lead_readers() -> bool:
    """Whether this thread's connection now holds the readers' lock (a session advisory lock, let go
    when the connection closes): the relay that holds it moves the position readers at their pace,
    so relays side by side do not all look at the head every few milliseconds. Always true on
    SQLite."""
    if connection.vendor != "postgresql":
        return True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql.TRY_READERS_LOCK)
            return cursor.fetchone()[0]
    except Exception:
        logger.warning("could not try the readers' lock; trying again", exc_info=True)
        connection.close()
        return False
