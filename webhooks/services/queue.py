"""Handing deliveries to the broker: one Celery message (task `webhooks.send_webhook`, queue
`webhooks`) per delivery.

The task is named, not imported: `webhooks.tasks` imports the services, so importing it back here
would make a cycle.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

from celery import current_app
from django.db import transaction
from django.utils import timezone

from core import tracing

logger = logging.getLogger(__name__)

SEND_WEBHOOK = "webhooks.send_webhook"
# The queue `CELERY_TASK_ROUTES` sends them down: its `QueueMark` proves a message lost (`domain_events.probes`).
WEBHOOK_QUEUE = "webhooks"


def enqueue_on_commit(delivery_ids: Iterable[uuid.UUID], *, eta: datetime | None = None) -> None:
    ids = [str(i) for i in delivery_ids]
    if ids:
        # Sent in the span that queued them (`core.tracing`), so their task joins its trace.
        transaction.on_commit(tracing.carried(lambda: enqueue(ids, eta=eta)))


def enqueue(delivery_ids: Sequence[str], *, eta: datetime | None = None) -> None:
    """Send one Celery message per delivery, stamped with when it was sent (the worker that starts it
    records that on the queue's mark, the sweep's proof of loss); a broker outage is left to the sweep."""
    for delivery_id in delivery_ids:
        try:
            sent_at = timezone.now().isoformat()
            current_app.send_task(SEND_WEBHOOK, args=[delivery_id], kwargs={"sent_at": sent_at}, eta=eta)
        except Exception:
            logger.warning("could not hand webhook delivery %s to the broker; the sweep will", delivery_id)
