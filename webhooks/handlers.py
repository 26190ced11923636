"""Reactions to events: thin, each calls one service.

Fan-out runs in-process right after the publisher's commit (`on_commit`): it only writes rows,
so it shares the executor's transaction and is applied once. The POSTs happen later, in Celery
workers on the `webhooks` queue, outside any transaction (`services.delivery_send`).
"""

from __future__ import annotations

from domain_events.events import DomainEvent
from webhooks import services


def queue_webhook_deliveries(event: DomainEvent) -> None:
    """One webhook delivery of `event` per active endpoint of its tenant that wants its type (with
    the other events of the executor's batch, when it runs in one)."""
    services.deliveries_fan_out_in_batch(event=event)
