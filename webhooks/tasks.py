"""Celery entry point of the webhooks module (queue `webhooks`): thin, it calls one service."""

from __future__ import annotations

from celery import shared_task

from webhooks import services


@shared_task(name="webhooks.send_webhook", ignore_result=True, soft_time_limit=45, time_limit=60)
def send_webhook(delivery_id: str) -> None:
    """Make the next attempt of one webhook delivery, if it is due and may go now."""
    services.delivery_send(delivery_id=delivery_id)
