"""The relays' claim of Celery deliveries that are due: never sent, started by a worker that died,
proved lost, or past `CELERY_LEASE`; a sent one not yet proved lost waits for a probe (`probes`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

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
