"""The backbone's Prometheus metrics.

Counters are counted in the process where things happen, once the transaction that records them
commits: events published by type, deliveries by handler and outcome (a `failed` outcome is a
retry scheduled). With `PROMETHEUS_MULTIPROC_DIR` set (before the process starts), every process
of a machine writes them to that folder and `/metrics` adds them up.

Gauges come from the database when `/metrics` is scraped (`BackboneCollector`): open deliveries
and the age of the oldest, dead letters by handler, each position reader's lag. Each is one
indexed query, and the figures are kept for `METRICS_CACHE_SECONDS`, so frequent scrapes by
several gunicorn workers do not load the database.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterator

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from domain_events.head import head, oldest_writer
from domain_events.models import Delivery, DeliveryStatus
from domain_events.subscriptions import Mode, subscriptions

EVENTS_PUBLISHED = Counter("shelfwise_events_published", "Events stored, by type.", ["type"])
DELIVERIES = Counter(
    "shelfwise_deliveries",
    "Handler deliveries run, by handler and outcome (failed: a retry is scheduled; dead: no more).",
    ["handler", "outcome"],
)


def count_published(event_type: str) -> None:
    """Count an event once the publisher's transaction commits (a rolled-back one stored nothing)."""
    transaction.on_commit(EVENTS_PUBLISHED.labels(type=event_type).inc)


def count_outcomes(outcomes: Tally[tuple[str, str]]) -> None:
    """Count (handler, outcome) pairs once the transaction recording them commits."""
    if outcomes:
        transaction.on_commit(lambda: [DELIVERIES.labels(h, o).inc(n) for (h, o), n in outcomes.items()])


class BackboneCollector(Collector):
    """Gauges read from the database at scrape time, kept for `METRICS_CACHE_SECONDS`."""

    def __init__(self) -> None:
        self._cached: list[GaugeMetricFamily] = []
        self._cached_at = -1e9

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if time.monotonic() - self._cached_at >= settings.METRICS_CACHE_SECONDS:
            self._cached = list(self._measure())
            self._cached_at = time.monotonic()
        yield from self._cached

    @staticmethod
    def _measure() -> Iterator[GaugeMetricFamily]:
        from domain_events import reader_lag

        now = timezone.now()
        backlog = Delivery.objects.filter(status__in=Delivery.OPEN).aggregate(n=Count("id"), oldest=Min("created_at"))
        yield GaugeMetricFamily(
            "shelfwise_outbox_backlog", "Deliveries not yet done (pending or to be retried).", value=backlog["n"]
        )
        oldest = (now - backlog["oldest"]).total_seconds() if backlog["oldest"] else 0.0
        yield GaugeMetricFamily(
            "shelfwise_outbox_oldest_open_seconds", "Age of the oldest delivery not yet done.", value=oldest
        )
        dead = GaugeMetricFamily("shelfwise_dead_letters", "Dead deliveries parked, by handler.", labels=["handler"])
        rows = Delivery.objects.filter(status=DeliveryStatus.DEAD).values_list("handler").annotate(n=Count("id"))
        parked = dict.fromkeys(subscriptions.names(Mode.ON_COMMIT, Mode.CELERY), 0) | dict(rows.order_by())
        for handler, n in sorted(parked.items()):
            dead.add_metric([handler], n)  # 0 for every handler without any: the series never vanishes
        yield dead
        yield GaugeMetricFamily(
            "shelfwise_events_head_position",
            "The readers' head: the highest position below which no event can still commit.",
            value=head(),
        )
        yield GaugeMetricFamily(
            "shelfwise_oldest_writing_transaction_seconds",
            "Age of the oldest open transaction of the database writing events: it holds the position readers back.",
            value=oldest_writer()[1],
        )
        positions = GaugeMetricFamily(
            "shelfwise_reader_lag_positions", "How far each position reader is behind the head.", labels=["reader"]
        )
        seconds = GaugeMetricFamily(
            "shelfwise_reader_lag_seconds", "Age of the first event each reader has not applied.", labels=["reader"]
        )
        for lag in reader_lag.lags():
            positions.add_metric([lag.name], lag.positions)
            seconds.add_metric([lag.name], lag.seconds)
        yield positions
        yield seconds
