"""Sending again: a redelivery or a recovery starts a fresh retry schedule, and the sweep of
`send_due_webhooks` hands on the open deliveries that are due and have no live message."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from core.errors import Conflict
from domain_events.models import QueueMark
from domain_events.probes import send_probes
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from webhooks.services.endpoints import EndpointDisabled
from webhooks.services.queue import WEBHOOK_QUEUE, enqueue_on_commit
from webhooks.services.waiting import first_open_of_its_subject, in_flight_to


def _restart(deliveries: Sequence[WebhookDelivery], now: datetime) -> None:
    for delivery in deliveries:
        delivery.status = DeliveryStatus.PENDING
        delivery.attempts_before_round = delivery.attempts
        delivery.next_attempt_at = now
        delivery.enqueued_at = now
        delivery.completed_at = None
        delivery.updated_at = now
    WebhookDelivery.objects.bulk_update(
        deliveries, ["status", "attempts_before_round", "next_attempt_at", "enqueued_at", "completed_at", "updated_at"]
    )
    enqueue_on_commit(d.pk for d in deliveries)


@transaction.atomic
def delivery_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery again now, whatever its state, with a fresh retry schedule and the same webhook-id.

    Raises `EndpointDisabled` if its endpoint is disabled.
    """
    if not WebhookEndpoint.objects.filter(pk=delivery.endpoint_id, is_active=True).exists():
        raise EndpointDisabled("The endpoint is disabled; enable it first.")
    delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
    if delivery.leased_until is not None and delivery.leased_until > timezone.now():
        raise Conflict("This delivery is being sent right now.")
    _restart([delivery], timezone.now())
    return delivery


@transaction.atomic
def endpoint_recover(*, endpoint: WebhookEndpoint, since: datetime) -> int:
    """Send again every delivery to `endpoint` whose last attempt failed at or after `since`
    (failed or dead); returns how many. Raises `EndpointDisabled` if the endpoint is disabled."""
    if not endpoint.is_active:
        raise EndpointDisabled("The endpoint is disabled; enable it first.")
    now = timezone.now()
    deliveries = list(
        WebhookDelivery.objects.select_for_update(skip_locked=True)
        .filter(
            endpoint=endpoint,
            status__in=[DeliveryStatus.FAILED, DeliveryStatus.DEAD],
            last_attempt_at__gte=since,
        )
        .exclude(leased_until__gt=now)
    )
    _restart(deliveries, now)
    return len(deliveries)


def deliveries_enqueue_due(*, limit: int = 500) -> int:
    """The sweep: hand to the broker the open deliveries that are due and have no live message
    (retries too far off for a countdown, messages lost with a worker or the broker). Returns how many.

    A due delivery whose message is still out is sent again only once that message is proved lost,
    as the relays do (`domain_events.probes`): the webhooks queue is first in, first out, so a
    worker that has started a message sent after this one was sent and due proves this one gone.
    A lease that ran out proves it too: a sender took the message, claimed the delivery and died.
    When nothing proves it yet, a probe goes down the queue: behind a backlog it waits its turn,
    and nothing is sent twice; on a quiet queue it proves the loss within seconds. Past
    `WEBHOOK_SWEEP_RESEND_AFTER` a message is sent again whatever the proof.
    """
    now = timezone.now()
    grace = timedelta(seconds=settings.WEBHOOK_SWEEP_GRACE)
    mark = QueueMark.objects.filter(queue=WEBHOOK_QUEUE).values_list("started_sent_at", flat=True).first()
    # No message, a sender that died holding its lease (its message was taken), or one too old.
    lost = (
        Q(enqueued_at__isnull=True)
        | Q(leased_until__lte=now)
        | Q(enqueued_at__lte=now - timedelta(seconds=settings.WEBHOOK_SWEEP_RESEND_AFTER))
    )
    if mark is not None:
        lost |= Q(enqueued_at__lt=mark, next_attempt_at__lt=mark)
    with transaction.atomic():
        due = (
            WebhookDelivery.objects.filter(status__in=WebhookDelivery.OPEN, next_attempt_at__lte=now - grace)
            .exclude(leased_until__gt=now)
            # One waiting behind an earlier open event of its subject could only be refused: it is
            # woken when that one ends. Handing those on flooded the queue with refusals ahead of
            # the deliveries that could go, and a backlog drained at a few sends a second.
            .filter(first_open_of_its_subject())
            # Nor one whose endpoint has a request in flight: that sender hands on the next.
            .exclude(Exists(in_flight_to(OuterRef("endpoint_id"), now)))
        )
        ids = list(
            due.filter(lost)
            .select_for_update(skip_locked=True)
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:limit]
        )
        WebhookDelivery.objects.filter(pk__in=ids).update(enqueued_at=now)
        enqueue_on_commit(ids)
        unproved = due.exclude(lost).exists()
    if unproved:
        send_probes({WEBHOOK_QUEUE})
    return len(ids)
