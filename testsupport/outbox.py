"""Running the outbox by hand in a test: a delivery here and now, a process without a handler."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from django.utils import timezone

from domain_events.celery_claims import claim_for_workers
from domain_events.executor import execute, run_due_here
from domain_events.fastpath import hand_on_follow_ups
from domain_events.models import Delivery
from domain_events.subscriptions import Mode, subscriptions


def run_deliveries_now(handler: str):
    """Run, here and now, every open delivery of `handler`, as a relay or a worker would."""
    Delivery.objects.filter(handler=handler, status__in=Delivery.OPEN).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1), sent_at=None, started_at=None
    )
    subscription = subscriptions.get(handler)
    if subscription is not None and subscription.mode is Mode.CELERY:
        claims, _ = claim_for_workers(1000, [subscription])
        return hand_on_follow_ups(execute(claims))
    return hand_on_follow_ups(run_due_here(1000, [handler]))


@contextlib.contextmanager
def subscriptions_without(*names: str):
    """Run the block as a process whose code lacks the handlers `names` (older code in a deploy)."""
    saved = subscriptions.remove(*names)
    try:
        yield
    finally:
        for subscription in saved:
            subscriptions.add(subscription)
