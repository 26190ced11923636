"""The Celery hand-off: tasks for slow or external handlers, each carrying a batch of one handler's
deliveries (one when a publisher hands on its event, up to `CELERY_BATCH` from a relay's claim).

This file sends the messages and stamps their start; `celery_claims` is the relays' claim of what
is due, `probes` the proof that a message was lost, `batches` the worker's side.

A sent delivery carries `sent_at`; the worker stamps `started_at` (fenced by the lease token)
before it runs the handler, and keeps the row for `CELERY_RUN_LEASE`, longer than the task's hard
time limit. A relay that finds a sent row still unstarted after `CELERY_SEND_CHECK` sends it again
only when the message was provably lost: a worker has started a message sent later on the same
queue (queues are first in, first out), which a small probe task also proves when nothing else
flows. A queue that is merely slow leaves its probe behind the waiting messages, so nothing is
sent twice; past `CELERY_LEASE` a relay sends it again whatever the proof.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from core import tracing
from domain_events.claims import Claim, months_of
from domain_events.conf import domain_events_settings
from domain_events.models import Delivery
from domain_events.probes import queue_reached
from domain_events.subscriptions import Subscription, subscriptions

logger = logging.getLogger(__name__)


def send_to_celery(items: Sequence[tuple[Claim, Subscription]], *, by_relay: bool = False) -> int:
    """One task per handler's batch of deliveries, at most `CELERY_BATCH` each; returns how many
    deliveries were sent.

    A publisher's commit usually hands on one event, so its tasks carry one delivery each; a relay's
    claim under backlog, or the follow-ups of a batch, carry many of one handler in one task. What
    the publisher could not send becomes due at once for the relays; what a relay could not send
    waits for its claim to expire.
    """
    from domain_events.tasks import run_delivery

    sent: list[Claim] = []
    try:
        with run_delivery.app.producer_or_acquire() as producer:
            for batch, subscription in _batches(items, domain_events_settings()["CELERY_BATCH"]):
                args, kwargs = task_arguments(batch, timezone.now())
                with tracing.within(batch[0].traceparent):
                    run_delivery.apply_async(
                        args=args,
                        kwargs=kwargs,
                        producer=producer,
                        retry=False,
                        queue=subscription.celery_queue,
                    )
                sent.extend(batch)
    except Exception:
        logger.warning(
            "broker unavailable: %d of %d deliveries not sent; a relay will send them",
            len(items) - len(sent),
            len(items),
            exc_info=True,
        )
        if not by_relay:
            done = {c.delivery_id for c in sent}
            _fenced([c for c, _ in items if c.delivery_id not in done], sent_at=None, due_in=None)
    if by_relay and sent:
        _fenced(sent, sent_at=timezone.now(), due_in=domain_events_settings()["CELERY_SEND_CHECK"])
    return len(sent)


def task_arguments(batch: Sequence[Claim], sent_at: datetime) -> tuple[tuple, dict | None]:
    """The arguments of `run_delivery` for one handler's `batch`: the first delivery's id, token,
    handler and the send time; then the others (`more`), and each one's event's `recorded_at`
    where known, so that the worker's statements search that month alone."""
    first, more = batch[0], batch[1:]
    kwargs: dict = {}
    if more:
        kwargs["more"] = [_message_item(c) for c in more]
    if first.event_recorded_at is not None:
        kwargs["recorded_at"] = first.event_recorded_at.isoformat()
    return (first.delivery_id, str(first.token), first.handler, sent_at.isoformat()), kwargs or None


def _message_item(claim: Claim) -> tuple:
    if claim.event_recorded_at is None:
        return (claim.delivery_id, str(claim.token))
    return (claim.delivery_id, str(claim.token), claim.event_recorded_at.isoformat())


def _batches(items: Sequence[tuple[Claim, Subscription]], size: int) -> Iterator[tuple[list[Claim], Subscription]]:
    """`items` grouped by handler, in the order each handler first comes, `size` at most a group."""
    by_handler: dict[str, tuple[list[Claim], Subscription]] = {}
    for claim, subscription in items:
        by_handler.setdefault(claim.handler, ([], subscription))[0].append(claim)
    for claims, subscription in by_handler.values():
        for start in range(0, len(claims), max(size, 1)):
            yield claims[start : start + max(size, 1)], subscription


def _fenced(claims: Sequence[Claim], *, sent_at: datetime | None, due_in) -> None:
    """Record a send (or a failed one) on rows still under our lease and not yet started by a
    worker: never over a retry time or a run lease that a worker has just written."""
    now = timezone.now()
    by_token: dict[uuid.UUID, list[Claim]] = {}
    for claim in claims:
        by_token.setdefault(claim.token, []).append(claim)
    try:
        for token, batch in by_token.items():
            _by_claims(batch).filter(lease_token=token, status__in=Delivery.OPEN, started_at__isnull=True).update(
                sent_at=sent_at, next_attempt_at=now + due_in if due_in else now, updated_at=now
            )
    except Exception:
        logger.warning("could not record the hand-off of %d deliveries; their lease stands", len(claims))


def _by_claims(claims: Sequence[Claim]):
    """The rows of `claims`, by id and, where every claim knows it, their events' `recorded_at`."""
    rows = Delivery.objects.filter(pk__in=[c.delivery_id for c in claims])
    months = months_of(c.event_recorded_at for c in claims)
    return rows if months is None else rows.filter(event_recorded_at__in=months)


def give_back(claims: Sequence[Claim]) -> None:
    """Deliveries a worker was sent but will not start after all: due at once for the relays, as
    if their send had failed (rows started or re-leased meanwhile are left as they are)."""
    if claims:
        _fenced(claims, sent_at=None, due_in=None)


def delivery_start(delivery_id: int, token: uuid.UUID, event_recorded_at: datetime | None = None) -> Claim | None:
    """Stamp the delivery as started by a worker and return its claim; None if the message is
    stale (its lease was taken over, or the delivery is finished) and must be dropped.

    For handlers that call out with no transaction open (`atomic=False`): while such a handler
    runs, nothing holds the row, and the stamp keeps relays from sending it again. An atomic
    handler runs under the row's lock, which relays skip, so it needs no stamp of its own.

    A row already started is another copy of the same message at work (the broker delivered it
    twice): this copy is stale. Were its worker dead, a relay sends the row again with a new lease
    once the run lease is over."""
    conf = domain_events_settings()
    now = timezone.now()
    rows = Delivery.objects.filter(pk=delivery_id)
    if event_recorded_at is not None:
        rows = rows.filter(event_recorded_at=event_recorded_at)
    with transaction.atomic():
        row = (
            rows.select_for_update()
            .filter(lease_token=token, status__in=Delivery.OPEN, started_at__isnull=True)
            .values_list("handler", "sent_at", "event_recorded_at")
            .first()
        )
        if row is None:
            return None
        handler, sent_at, event_recorded_at = row
        Delivery.objects.filter(pk=delivery_id, event_recorded_at=event_recorded_at).update(
            started_at=now, next_attempt_at=now + conf["CELERY_RUN_LEASE"], updated_at=now
        )
    subscription = subscriptions.get(handler)
    if sent_at is not None and subscription is not None:
        queue_reached(subscription.celery_queue, sent_at)
    return Claim(delivery_id, token, handler, event_recorded_at=event_recorded_at)
