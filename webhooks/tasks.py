"""Celery entry point of the webhooks module (queue `webhooks`): thin, it calls one service.

The services send its messages by name (`services.queue.SEND_WEBHOOK`) and never import this
module, so the imports go one way only.
"""

from __future__ import annotations

from celery import shared_task

from webhooks.services.queue import SEND_WEBHOOK
from webhooks.services.sending import delivery_send


@shared_task(name=SEND_WEBHOOK, ignore_result=True, soft_time_limit=45, time_limit=60)
def send_webhook(delivery_id: str, sent_at: str | None = None) -> None:
    """Make the next attempt of one webhook delivery, if it is due and may go now. `sent_at`: when
    the message was sent (none from older senders), recorded as reaching the queue."""
    delivery_send(delivery_id=delivery_id, sent_at=sent_at)
