"""A Celery worker's batch: one task runs many deliveries of one handler, each in its own isolation.

How many a task runs adapts to the queue. A task names its deliveries with their lease tokens: one
when a publisher's commit hands on an event, up to `CELERY_BATCH` when a relay hands on a backlog
(`handoff.send_to_celery`). Under backlog the worker also takes the same handler's deliveries whose
messages are still queued behind its own (`sql.TAKE_IN_FLIGHT`), up to `CELERY_BATCH` in all; when
the queue is idle there are none, and the task runs its one delivery at once.

Every row is re-read under its lease token. A taken row gets a new token, so its own message,
when it comes, finds it no longer leased to it and is dropped: a message lost (a relay sends the
row again, `handoff`), delivered twice or late never runs a delivery twice nor records it twice.

Each delivery keeps its own isolation:
- atomic handlers run as a relay's batch does (`executor`): one transaction with a savepoint per
  delivery, each handler under `HANDLER_TIME_LIMIT`, its own outcome, attempts and retry schedule;
  a broken connection or transaction falls back to one delivery per transaction;
- handlers that call out (`atomic=False`: a payment capture, an e-mail) keep their two phases per
  delivery: the delivery stamped as started and its lease checked in one statement, the call made
  with no transaction open, the outcome recorded in another short transaction. The handler's
  batch scope, if it has one (`Subscription.batch_scope`: the e-mails' one SMTP connection), is
  open around the whole batch.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from contextlib import nullcontext
from datetime import datetime

from django.db import connection
from django.utils import timezone

from domain_events import sql
from domain_events.claims import Claim, months_of
from domain_events.conf import domain_events_settings
from domain_events.executor import Report, execute, start_and_run, take_and_run
from domain_events.handoff import delivery_start, give_back
from domain_events.probes import queue_reached
from domain_events.subscriptions import Subscription, subscriptions

logger = logging.getLogger(__name__)


def run_batch(handler: str | None, own: Sequence[Claim], sent_at: datetime | None) -> Report:
    """Run the deliveries `own` that a message named (all of `handler`), and under backlog more
    of the same handler's; returns what came of them (nothing handled: the message was stale)."""
    subscription = subscriptions.get(handler) if handler else None
    if subscription is None:
        # A message of an older sender (no handler named) or for a handler this worker lacks: each
        # delivery on its own, recorded as failing if its handler is not here.
        report = Report()
        for claim in own:
            started = delivery_start(claim.delivery_id, claim.token, claim.event_recorded_at)
            if started is not None:
                report.add(execute([started], isolated=True))
        return report
    room = domain_events_settings()["CELERY_BATCH"] - len(own)
    if sent_at is not None:
        queue_reached(subscription.celery_queue, sent_at, throttled=True)
    if subscription.atomic:
        taken, live = take_in_flight(subscription, own=own, limit=room)
        return execute([*(c for c in own if c.delivery_id in live), *taken], isolated=True)
    return _run_calling_out(subscription, own, room)


def _run_calling_out(subscription: Subscription, own: Sequence[Claim], room: int) -> Report:
    """One delivery after the other, each in its two phases; more taken one at a time while there
    is room, so that each is stamped as started just before it runs."""
    conf = domain_events_settings()
    # Past half its hard time limit, the task starts nothing more: what it named but did not start
    # goes back to the relays at once, and it takes nothing more.
    stop_at = time.monotonic() + conf["CELERY_TIME_LIMIT"].total_seconds() / 2
    report = Report()
    scope = subscription.batch_scope() if subscription.batch_scope else nullcontext()
    with scope:
        for index, claim in enumerate(own):
            if time.monotonic() > stop_at:
                give_back(own[index:])
                return report
            report.add(_start_and_run(claim))
        while room > 0 and time.monotonic() <= stop_at:
            taken = _take_and_run(subscription)
            if taken is None:
                break
            room -= 1
            report.add(taken)
    return report


def _take_and_run(subscription: Subscription) -> Report | None:
    """One more delivery of a handler that calls out, taken from those whose messages are still
    queued, and run; None when there is none. On PostgreSQL the take, the start stamp and the
    look at what holds it back are one statement."""
    if connection.vendor == "postgresql":
        return take_and_run(subscription.name)
    taken, _ = take_in_flight(subscription, limit=1)
    return execute(taken, isolated=True) if taken else None


def _start_and_run(claim: Claim) -> Report:
    """One delivery of a handler that calls out: stamped as started, then run (nothing if the
    message is stale). On PostgreSQL the stamp and the lease check are one statement."""
    if connection.vendor == "postgresql":
        return start_and_run(claim) or Report()
    started = delivery_start(claim.delivery_id, claim.token, claim.event_recorded_at)
    return execute([started], isolated=True) if started is not None else Report()


def take_in_flight(
    subscription: Subscription, *, own: Sequence[Claim] = (), limit: int
) -> tuple[list[Claim], set[int]]:
    """Lease to this worker up to `limit` deliveries of `subscription` whose messages are still on
    their way, stamped as started (`sql.TAKE_IN_FLIGHT`; none when the queue is idle); and which
    of `own` are still leased to their tokens (all of them where this check cannot be made)."""
    if connection.vendor != "postgresql":
        return [], {c.delivery_id for c in own}
    now = timezone.now()
    token = uuid.uuid4()
    params = {
        "token": token,
        "now": now,
        "until": now + domain_events_settings()["CELERY_RUN_LEASE"],
        "handler": subscription.name,
        "mine": [c.delivery_id for c in own],
        "tokens": list({c.token for c in own}),
        "limit": max(limit, 0),
    }
    statement = sql.TAKE_IN_FLIGHT
    months = months_of(c.event_recorded_at for c in own)
    if months is not None:
        statement, params["recorded"] = sql.TAKE_IN_FLIGHT_IN_MONTHS, months
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        rows = cursor.fetchall()
    taken = [
        Claim(pk, token, subscription.name, event_recorded_at=recorded_at)
        for pk, recorded_at, was_taken in rows
        if was_taken
    ]
    if taken:
        logger.debug("took %d queued deliveries of %s into this batch", len(taken), subscription.name)
    return taken, {pk for pk, _, was_taken in rows if not was_taken}
