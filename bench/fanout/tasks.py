"""The plain-Celery reference: the same five handlers as one Celery task each, with no platform.

Each task is what a careful hand-written Celery handler does: in one transaction, an idempotent
inbox insert (a redelivered message changes nothing) and the counter update.
"""

from uuid import UUID

from celery import shared_task
from django.db import connection, transaction

from bench.fanout.models import Inbox
from bench.fanout.names import BUMP_COUNTER


@shared_task(name="bench.plain_count", acks_late=True, ignore_result=True)
def plain_count(handler: str, account: int, event_id: str) -> None:
    with transaction.atomic():
        _, created = Inbox.objects.get_or_create(handler=handler, event_id=UUID(event_id))
        if created:
            with connection.cursor() as cursor:
                cursor.execute(BUMP_COUNTER, (handler, account))
