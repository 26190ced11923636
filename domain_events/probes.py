"""Proof of loss for Celery messages: queues are first in, first out, so once a worker has started
a message sent at t on a queue, every message sent there before t and still unstarted was lost.
Workers record the latest such t per queue (`QueueMark`); a probe task sent down a quiet queue
proves it when nothing else flows."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from domain_events.conf import domain_events_settings
from domain_events.models import QueueMark

logger = logging.getLogger(__name__)


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
