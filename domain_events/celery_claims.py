"""The relays' claim of Celery deliveries that are due: never sent, started by a worker that died,
proved lost, or past `CELERY_LEASE`; a sent one not yet proved lost waits for a probe (`probes`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from domain_events.claims import Claim
from domain_events.conf import domain_events_settings
from domain_events.models import Delivery, QueueMark
from domain_events.subscriptions import Subscription


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
            .values_list("pk", "handler", "sent_at", "started_at", "event_recorded_at")[:limit]
        )
        if not rows:
            return [], probe
        marks = dict(QueueMark.objects.filter(queue__in=set(queue_of.values())).values_list("queue", "started_sent_at"))
        claim: list[tuple[int, str, datetime]] = []
        postpone: list[tuple[int, str, datetime]] = []
        for pk, handler, sent_at, started_at, recorded_at in rows:
            queue = queue_of[handler]
            mark = marks.get(queue)
            if sent_at is None or started_at is not None:
                claim.append((pk, handler, recorded_at))  # never sent, or started by a worker that died
            elif mark is not None and sent_at < mark:
                claim.append((pk, handler, recorded_at))  # lost: a later message on its queue has started
            elif sent_at <= now - conf["CELERY_LEASE"]:
                claim.append((pk, handler, recorded_at))
            else:
                postpone.append((pk, handler, recorded_at))
                probe.add(queue)
        if postpone:
            _rows(postpone).update(next_attempt_at=now + conf["CELERY_SEND_CHECK"], updated_at=now)
        if not claim:
            return [], probe
        token = uuid.uuid4()
        _rows(claim).update(
            lease_token=token,
            next_attempt_at=now + conf["LEASE"],
            sent_at=None,
            started_at=None,
            held_by=None,  # no longer waiting: a release must not move the lease this claim holds
            updated_at=now,
        )
    return [Claim(pk, token, handler, event_recorded_at=at) for pk, handler, at in claim], probe


def _rows(chosen: Sequence[tuple[int, str, datetime]]):
    """The rows chosen, by id and their events' `recorded_at` (the partitions of those months alone)."""
    return Delivery.objects.filter(
        pk__in=[pk for pk, _, _ in chosen], event_recorded_at__in={at for _, _, at in chosen}
    )
