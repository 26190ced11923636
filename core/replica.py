"""Reads that a streaming replica may serve (`DATABASE_REPLICA_URL`; docs/operations.md).

Nothing goes to the replica unless asked for: the read side asks with `reads_from_replica()` (a
context manager, or a decorator) where a read may lag a little behind the primary: the dashboard,
the events feed, an order's timeline, the admin's lists and home page, the projections' replays.
Every write, every other read, and every read inside a transaction of the primary stay on the
primary, and so do the reads of a client that wrote a moment ago (`ReadYourWritesMiddleware`):
whoever wrote something reads it back there.

A block decides once, when it is entered, which server its reads go to (`ReplicaRouter` follows
that decision): the replica if one is configured, no transaction is open on the primary, and the
replica answered the last look at it with a lag under `DATABASE_REPLICA_MAX_LAG`; the primary
otherwise. Each process looks at most every `DATABASE_REPLICA_CHECK_INTERVAL` seconds:

- the lag compares the primary's flushed WAL position with the replica's replayed one: a replica
  that has replayed it is 0 s behind; one that has not is behind by the age of the last transaction
  it replayed (`pg_last_xact_replay_timestamp()`), which errs towards the primary after a quiet spell;
- a replica that does not answer counts as down until the next look.

A replica that fails under a decorated function (it stopped, a query conflicted with its replay)
costs only a second run of the function on the primary; a page never fails for it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections, transaction
from django.http import HttpRequest, HttpResponse
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

PRIMARY = DEFAULT_DB_ALIAS
REPLICA = "replica"

# How long a read that must include a given primary position waits for the replica to replay it
# before it goes to the primary instead.
REPLAY_WAIT = 0.5

FALLBACKS = Counter(
    "shelfwise_replica_fallbacks",
    "Read-side blocks that went to the primary although a replica is configured, by reason "
    "(lag, down, behind: it had not replayed what the read must include; failed: it failed mid-read).",
    ["reason"],
)

# The server the innermost `reads_from_replica()` block chose; None outside every block.
_chosen: ContextVar[str | None] = ContextVar("replica_reads", default=None)
# Whether this request's client wrote a moment ago (`ReadYourWritesMiddleware`).
_wrote_recently: ContextVar[bool] = ContextVar("wrote_recently", default=False)

# Set on a client that wrote, for as long as a replica may lag behind what it wrote.
WROTE_COOKIE = "shelfwise_wrote"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

F = TypeVar("F", bound=Callable[..., Any])


def replica_configured() -> bool:
    """Whether `DATABASE_REPLICA_URL` names a replica."""
    return REPLICA in connections.settings


def _primary_in_transaction() -> bool:
    return connections[PRIMARY].in_atomic_block


class ReplicaRouter:
    """Sends reads to the replica inside a block that chose it, unless the primary has a
    transaction open (a read there must see what it wrote); everything else to the primary."""

    def db_for_read(self, model: type, **hints: Any) -> str | None:
        if _chosen.get() == REPLICA and not _primary_in_transaction():
            return REPLICA
        return None

    def db_for_write(self, model: type, **hints: Any) -> str:
        return PRIMARY

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        # The replica holds the primary's rows: a row read there may refer to one read here.
        if {obj1._state.db, obj2._state.db} <= {PRIMARY, REPLICA, None}:
            return True
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        # The replica is read-only: it gets its schema from the primary's WAL.
        return False if db == REPLICA else None


# --- the replica's health and lag --------------------------------------------------------------


@dataclass(frozen=True)
class ReplicaStatus:
    """One look at the replica: whether it answered, and how far behind the primary it was."""

    reachable: bool
    lag: float  # seconds; infinite when unknown (unreachable, or nothing replayed yet)
    checked_at: float  # time.monotonic() of the look
    error: str = ""

    @property
    def usable(self) -> bool:
        return self.reachable and self.lag <= settings.DATABASE_REPLICA_MAX_LAG

    @property
    def reason(self) -> str:
        return "down" if not self.reachable else "lag" if not self.usable else ""


_lock = threading.Lock()
_status: ReplicaStatus | None = None


def replica_status(*, fresh: bool = False) -> ReplicaStatus | None:
    """The last look at the replica, or a new one when that is older than
    `DATABASE_REPLICA_CHECK_INTERVAL` (or `fresh`); None without a replica."""
    global _status
    if not replica_configured():
        return None
    status = _status
    if fresh or status is None or time.monotonic() - status.checked_at >= settings.DATABASE_REPLICA_CHECK_INTERVAL:
        status = _look()
        with _lock:
            _status = status
    return status


def forget_replica_status() -> None:
    """Look at the replica again on the next read (tests; after a failover)."""
    global _status
    with _lock:
        _status = None


def _mark_down(error: str) -> None:
    global _status
    with _lock:
        _status = ReplicaStatus(False, float("inf"), time.monotonic(), error)


def _close_replica() -> None:
    with contextlib.suppress(Exception):
        connections[REPLICA].close()


def _look() -> ReplicaStatus:
    """Compare the primary's flushed WAL position with what the replica has replayed."""
    now = time.monotonic()
    with connections[PRIMARY].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_flush_lsn()")
        [flushed] = cursor.fetchone()
    try:
        with connections[REPLICA].cursor() as cursor:
            cursor.execute(
                "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn() >= %s::pg_lsn,"
                " EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp())",
                [flushed],
            )
            recovering, caught_up, age = cursor.fetchone()
    except (OperationalError, InterfaceError) as exc:
        _close_replica()
        logger.warning("the read replica does not answer; reads go to the primary: %s", exc)
        return ReplicaStatus(False, float("inf"), now, str(exc))
    if not recovering or caught_up:
        return ReplicaStatus(True, 0.0, now)
    # Nothing replayed yet: how far behind is unknown.
    return ReplicaStatus(True, max(0.0, float(age)) if age is not None else float("inf"), now)


def primary_position() -> str | None:
    """The primary's WAL position now (its insert position: every transaction that has ended is
    below it), for `reads_from_replica(replayed=…)`; None without a replica."""
    if not replica_configured() or connections[PRIMARY].vendor != "postgresql":
        return None
    with connections[PRIMARY].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_insert_lsn()")
        return cursor.fetchone()[0]


def _has_replayed(position: str) -> bool:
    """Whether the replica has replayed the primary's WAL up to `position`, waiting up to
    `REPLAY_WAIT` for it."""
    deadline = time.monotonic() + REPLAY_WAIT
    try:
        with connections[REPLICA].cursor() as cursor:
            while True:
                cursor.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [position])
                if cursor.fetchone()[0]:
                    return True
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.005)
    except (OperationalError, InterfaceError) as exc:
        _close_replica()
        _mark_down(str(exc))
        return False


# --- choosing the server -----------------------------------------------------------------------


def _choose(replayed: str | None) -> str:
    outer = _chosen.get()
    if outer == PRIMARY or not replica_configured() or _primary_in_transaction() or _wrote_recently.get():
        return PRIMARY
    if outer is None:
        status = replica_status()
        if status is None or not status.usable:
            FALLBACKS.labels(status.reason if status else "down").inc()
            return PRIMARY
    if replayed is not None and not _has_replayed(replayed):
        FALLBACKS.labels("behind").inc()
        return PRIMARY
    return REPLICA


def reading_from() -> str:
    """The server reads go to here and now: `replica` or `default` (the primary)."""
    return REPLICA if _chosen.get() == REPLICA and not _primary_in_transaction() else PRIMARY


class reads_from_replica:
    """Send the block's reads to the replica when it is up, caught up and no transaction of the
    primary is open; to the primary otherwise. `with reads_from_replica() as server:` gives the
    server chosen; `@reads_from_replica()` runs the function again on the primary when the replica
    fails under it.

    `replayed`, a position from `primary_position()`, asks for a replica that has replayed at
    least that far (the block then includes everything committed before it), waiting a moment for
    it. A block inside another keeps the outer one's choice, and goes to the primary where it
    asks for more than the chosen replica has replayed.
    """

    def __init__(self, *, replayed: str | None = None) -> None:
        self._replayed = replayed
        self._token: Any = None

    def __enter__(self) -> str:
        server = _choose(self._replayed)
        self._token = _chosen.set(server)
        return server

    def __exit__(self, *exc_info: object) -> None:
        _chosen.reset(self._token)

    def __call__(self, func: F) -> F:
        replayed = self._replayed

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            with reads_from_replica(replayed=replayed) as server:
                try:
                    return func(*args, **kwargs)
                except (OperationalError, InterfaceError) as exc:
                    if server != REPLICA:
                        raise
                    replica_failed(exc)
            with reads_from_primary():
                return func(*args, **kwargs)

        return run  # type: ignore[return-value]


@contextlib.contextmanager
def reads_from_primary() -> Iterator[None]:
    """Send the block's reads to the primary, inside a `reads_from_replica()` block too (a read
    that must see the latest state, or a second try after the replica failed)."""
    token = _chosen.set(PRIMARY)
    try:
        yield
    finally:
        _chosen.reset(token)


def replica_failed(exc: Exception) -> None:
    """Count a read that failed on the replica; if the replica no longer answers, it is down until
    the next look. The caller reads again from the primary."""
    FALLBACKS.labels("failed").inc()
    replica = connections[REPLICA]
    if replica.connection is None or not replica.is_usable():
        _close_replica()
        _mark_down(str(exc))
    logger.warning("a read on the replica failed; it runs again on the primary: %s", exc)


@contextlib.contextmanager
def one_snapshot() -> Iterator[None]:
    """On the replica, run the block's reads in one read-only REPEATABLE READ transaction, so that
    its statements all see the same replayed state (replay goes on between two statements). On the
    primary the block runs as it would anyway."""
    if reading_from() != REPLICA or connections[REPLICA].in_atomic_block:
        yield
        return
    with transaction.atomic(using=REPLICA):
        with connections[REPLICA].cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


# --- metrics -----------------------------------------------------------------------------------


class ReplicaCollector(Collector):
    """`/metrics`: whether the replica answers and how far behind the primary it is (one look,
    as the read side's, shared with it)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        status = replica_status()
        if status is None:
            return
        up = GaugeMetricFamily("shelfwise_replica_up", "Whether the read replica answered the last look at it.")
        up.add_metric([], 1.0 if status.reachable else 0.0)
        yield up
        lag = GaugeMetricFamily(
            "shelfwise_replica_lag_seconds",
            "How far the read replica is behind the primary (+Inf when it does not answer).",
        )
        lag.add_metric([], status.lag)
        yield lag
        serving = GaugeMetricFamily(
            "shelfwise_replica_serving",
            "Whether the read side reads from the replica now (1), or from the primary because it lags or is down (0).",
        )
        serving.add_metric([], 1.0 if status.usable else 0.0)
        yield serving


# --- reading one's own writes ------------------------------------------------------------------


class ReadYourWritesMiddleware:
    """A client that wrote (any request but GET, HEAD, OPTIONS) reads from the primary for the next
    `DATABASE_REPLICA_MAX_LAG` seconds: the list the admin shows after a save includes the save. A
    cookie carries it, so it holds on whichever web machine the next request lands. Without a
    replica it does nothing."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not replica_configured():
            return self.get_response(request)
        token = _wrote_recently.set(WROTE_COOKIE in request.COOKIES)
        try:
            response = self.get_response(request)
        finally:
            _wrote_recently.reset(token)
        if request.method not in SAFE_METHODS:
            response.set_cookie(
                WROTE_COOKIE,
                "1",
                max_age=math.ceil(settings.DATABASE_REPLICA_MAX_LAG),
                secure=settings.SESSION_COOKIE_SECURE,
                httponly=True,
                samesite="Lax",
            )
        return response
