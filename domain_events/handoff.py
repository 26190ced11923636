"""The Celery hand-off: one task per (event, handler) for slow or external handlers.

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
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from domain_events.claims import Claim
from domain_events.conf import domain_events_settings
from domain_events.models import Delivery, QueueMark
from domain_events.subscriptions import Subscription, subscriptions

logger = logging.getLogger(__name__)


def send_to_celery(items: Sequence[tuple[Claim, Subscription]], *, by_relay: bool = False) -> int:
    """One task per (event, handler); returns how many were sent.

    What the publisher could not send becomes due at once for the relays; what a relay could not
    send waits for its claim to expire.
    """
    from domain_events.tasks import run_delivery

    sent: list[Claim] = []
    try:
        with run_delivery.app.producer_or_acquire() as producer:
            for claim, subscription in items:
                run_delivery.apply_async(
                    args=(claim.delivery_id, str(claim.token), claim.handler, timezone.now().isoformat()),
                    producer=producer,
                    retry=False,
                    queue=subscription.celery_queue,
                )
                sent.append(claim)
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


def _fenced(claims: Sequence[Claim], *, sent_at: datetime | None, due_in) -> None:
    """Record a send (or a failed one) on rows still under our lease and not yet started by a
    worker: never over a retry time or a run lease that a worker has just written."""
    now = timezone.now()
    by_token: dict[uuid.UUID, list[int]] = {}
    for claim in claims:
        by_token.setdefault(claim.token, []).append(claim.delivery_id)
    try:
        for token, ids in by_token.items():
            Delivery.objects.filter(
                pk__in=ids, lease_token=token, status__in=Delivery.OPEN, started_at__isnull=True
            ).update(sent_at=sent_at, next_attempt_at=now + due_in if due_in else now, updated_at=now)
    except Exception:
        logger.warning("could not record the hand-off of %d deliveries; their lease stands", len(claims))


def claim_for_workers(limit: int, handlers: Sequence[Subscription]) -> tuple[list[Claim], set[str]]:
    """Lease up to `limit` due deliveries of Celery `handlers`; returns them and the queues that
    need a probe (a message there is overdue, and nothing proves it lost yet)."""
    if not handlers:
        return [], set()
    conf = domain_events_settings()
    queue_of = {s.name: s.celery_queue for s in handlers}
    probe: set[str] = set()
    with transaction.atomic():
        now = timezone.now()
        rows = list(
            Delivery.objects.filter(
                handler__in=list(queue_of),
                status__in=Delivery.OPEN,
                next_attempt_at__lte=now,
            )
            .order_by("next_attempt_at")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", "handler", "sent_at", "started_at")[:limit]
        )
        if not rows:
            return [], probe
        marks = dict(QueueMark.objects.filter(queue__in=set(queue_of.values())).values_list("queue", "started_sent_at"))
        claim: list[tuple[int, str]] = []
        postpone: list[int] = []
        for pk, handler, sent_at, started_at in rows:
            queue = queue_of[handler]
            mark = marks.get(queue)
            if sent_at is None or started_at is not None:
                claim.append((pk, handler))  # never sent, or started by a worker that died
            elif mark is not None and sent_at < mark:
                claim.append((pk, handler))  # lost: a later message on its queue has started
            elif sent_at <= now - conf["CELERY_LEASE"]:
                claim.append((pk, handler))
            else:
                postpone.append(pk)
                probe.add(queue)
        if postpone:
            Delivery.objects.filter(pk__in=postpone).update(
                next_attempt_at=now + conf["CELERY_SEND_CHECK"], updated_at=now
            )
        if not claim:
            return [], probe
        token = uuid.uuid4()
        Delivery.objects.filter(pk__in=[pk for pk, _ in claim]).update(
            lease_token=token,
            next_attempt_at=now + conf["LEASE"],
            sent_at=None,
            started_at=None,
            held_by=None,  # no longer waiting: a release must not move the lease this claim holds
            updated_at=now,
        )
    return [Claim(pk, token, handler) for pk, handler in claim], probe


def send_probes(queues: set[str]) -> int:
    """Send a probe down each queue, at most one per `CELERY_SEND_CHECK`; returns how many."""
    from domain_events.tasks import mark_queue

    conf = domain_events_settings()
    now = timezone.now()
    sent = 0
    for queue in sorted(queues):
        due = QueueMark.objects.filter(queue=queue).values_list("probe_sent_at", flat=True).first()
        if due is not None and due > now - conf["CELERY_SEND_CHECK"]:
            continue
        try:
            mark_queue.apply_async(args=(queue, now.isoformat()), queue=queue, retry=False)
        except Exception:
            logger.warning("could not send a probe down queue %s", queue, exc_info=True)
            continue
        if not QueueMark.objects.filter(queue=queue).update(probe_sent_at=now):
            _create_mark(queue, started_sent_at=datetime.min.replace(tzinfo=now.tzinfo), probe_sent_at=now)
        sent += 1
    return sent


def _create_mark(queue: str, **values) -> None:
    try:
        with transaction.atomic():
            QueueMark.objects.create(queue=queue, **values)
    except IntegrityError:
        pass  # another process created it first


# A worker records that it reached a queue at most this often per queue: a lower mark proves less,
# never too much, and every task writing the one row of its queue would queue them on its lock.
MARK_STEP = timedelta(seconds=1)
_marked: dict[str, datetime] = {}


def queue_reached(queue: str, sent_at: datetime, *, throttled: bool = False) -> None:
    """A worker has started a message sent at `sent_at` on `queue`: anything sent earlier and
    still unstarted there was lost. `throttled`: skip the write if this process recorded a mark
    on `queue` less than `MARK_STEP` before `sent_at` (a probe's call is never throttled)."""
    if throttled:
        last = _marked.get(queue)
        if last is not None and sent_at < last + MARK_STEP:
            return
        _marked[queue] = sent_at
    updated = QueueMark.objects.filter(queue=queue, started_sent_at__lt=sent_at).update(started_sent_at=sent_at)
    if not updated and not QueueMark.objects.filter(queue=queue).exists():
        _create_mark(queue, started_sent_at=sent_at)


def delivery_start(delivery_id: int, token: uuid.UUID) -> Claim | None:
    """Stamp the delivery as started by a worker and return its claim; None if the message is
    stale (its lease was taken over, or the delivery is finished) and must be dropped.

    For handlers that call out with no transaction open (`atomic=False`): while such a handler
    runs, nothing holds the row, and the stamp keeps relays from sending it again. An atomic
    handler runs under the row's lock, which relays skip, so it needs no stamp of its own."""
    conf = domain_events_settings()
    now = timezone.now()
    with transaction.atomic():
        row = (
            Delivery.objects.select_for_update()
            .filter(pk=delivery_id, lease_token=token, status__in=Delivery.OPEN)
            .values_list("handler", "sent_at")
            .first()
        )
        if row is None:
            return None
        handler, sent_at = row
        Delivery.objects.filter(pk=delivery_id).update(
            started_at=now, next_attempt_at=now + conf["CELERY_RUN_LEASE"], updated_at=now
        )
    subscription = subscriptions.get(handler)
    if sent_at is not None and subscription is not None:
        queue_reached(subscription.celery_queue, sent_at)
    return Claim(delivery_id, token, handler)
