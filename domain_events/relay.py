"""The outbox relay: hands on every delivery that is due (lost dispatch, expired lease, retry).

It wakes on PostgreSQL LISTEN/NOTIFY (the outbox trigger notifies once per committing
transaction) and polls as a fallback. Several relays run side by side: claims are short leases
taken with `SKIP LOCKED` and committed before any handler runs or any message is sent.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from datetime import timedelta

import psycopg
from django.db import connection, transaction
from django.utils import timezone

from domain_events.bus import Mode, event_bus
from domain_events.conf import domain_events_settings
from domain_events.dispatch import Report, claim_due, hand_on, run_due_here
from domain_events.models import Delivery

logger = logging.getLogger(__name__)

PRUNE_EVERY = 60.0
PRUNE_BATCH = 5000


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
        self.retention: timedelta = conf["DELIVERY_RETENTION"]
        self.on_report = on_report
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._stopping = False
        self._listener: psycopg.Connection | None = None
        self._last_prune = 0.0

    # --- one pass -----------------------------------------------------------------------------

    def drain(self) -> Report:
        """Run and send batches until nothing is due.

        In-process handlers' deliveries are claimed and run in one transaction (the row lock is
        the claim); Celery handlers' deliveries are leased, the lease committed, then sent.
        """
        total = Report()
        remote = [s.name for s in event_bus.subscriptions() if s.mode is Mode.CELERY]
        while not self._stopping:
            report = run_due_here(self.batch_size)
            full = report.handled >= self.batch_size
            if remote:
                claims = claim_due(self.batch_size, handlers=remote)
                if claims:
                    report.add(hand_on(claims, by_relay=True))
                full = full or len(claims) >= self.batch_size
            total.add(report)
            if self.on_report and report.handled:
                self.on_report(report)
            if not full:
                break
        return total

    def prune(self) -> int:
        """Delete succeeded delivery records older than the retention; events are kept for ever."""
        cutoff = timezone.now() - self.retention
        deleted = 0
        while True:
            with transaction.atomic():
                ids = list(
                    Delivery.objects.filter(status=Delivery.Status.SUCCEEDED, completed_at__lt=cutoff).values_list(
                        "pk", flat=True
                    )[:PRUNE_BATCH]
                )
                if not ids:
                    return deleted
                deleted += Delivery.objects.filter(pk__in=ids).delete()[0]

    # --- long-running -------------------------------------------------------------------------

    def run(self) -> None:
        self._install_signal_handlers()
        self._listen()
        logger.info("outbox relay %s started (batch %d, poll %.1fs)", self.name, self.batch_size, self.poll_interval)
        try:
            while not self._stopping:
                try:
                    self.drain()
                    if time.monotonic() - self._last_prune > PRUNE_EVERY:
                        pruned = self.prune()
                        self._last_prune = time.monotonic()
                        if pruned:
                            logger.info("pruned %d succeeded delivery records", pruned)
                except Exception:
                    # A database restart or a network blip: keep the relay alive and try again.
                    logger.exception("relay pass failed; retrying")
                    connection.close()
                    time.sleep(self.poll_interval)
                self._wait()
        finally:
            if self._listener is not None:
                self._listener.close()
            logger.info("outbox relay %s stopped", self.name)

    def stop(self, *_: object) -> None:
        self._stopping = True

    def _install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def _listen(self) -> None:
        if connection.vendor != "postgresql":
            return
        try:
            params = connection.get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            self._listener = psycopg.connect(**params, autocommit=True)
            self._listener.execute(f'LISTEN "{self.channel}"')
        except psycopg.Error:
            logger.warning("LISTEN failed; relay polls every %.1fs", self.poll_interval, exc_info=True)
            self._listener = None

    def _wait(self) -> None:
        """Sleep until notified or the poll interval is over.

        After a notification the relay lingers for `RELAY_GATHER` seconds and swallows the
        notifications of that moment, so that busy publishers make batches, not a claim each.
        """
        if self._listener is None:
            time.sleep(self.poll_interval)
            return
        try:
            woken = False
            for _ in self._listener.notifies(timeout=self.poll_interval, stop_after=1):
                woken = True
            if woken and self.gather > 0:
                time.sleep(self.gather)
                for _ in self._listener.notifies(timeout=0, stop_after=10_000):
                    pass
        except psycopg.Error:
            logger.warning("lost the LISTEN connection; reconnecting", exc_info=True)
            self._listener = None
            time.sleep(self.poll_interval)
            self._listen()
