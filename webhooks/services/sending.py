"""Sending: a task claims a batch of its endpoint's deliveries, POSTs them one after another with
no transaction open over the worker's kept-alive connection, records their outcomes (each retried
or buried on its own), and goes on with the endpoint's next batch or hands it on."""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone
from standardwebhooks import Webhook

from core import tracing
from core.log_context import log_scope
from domain_events.cloudevents import CONTENT_TYPE
from domain_events.probes import queue_reached
from webhooks import sql, transport
from webhooks.metrics import WEBHOOK_REQUESTS, outcome_of
from webhooks.models import DeliveryStatus, WebhookDelivery
from webhooks.services.batches import Batch, Sent, batch_claim, batch_record, free_deliveries
from webhooks.services.queue import SEND_WEBHOOK, WEBHOOK_QUEUE, enqueue_on_commit
from webhooks.services.waiting import wake_next_of_subject

logger = logging.getLogger(__name__)

# A sender goes on with its endpoint's next batch for at most this many deliveries or seconds in
# one task; then it hands the next to the broker. A batch is at most `CHAIN_LIMIT` deliveries.
CHAIN_LIMIT = 50
CHAIN_SECONDS = 10.0


def _named(delivery_id: uuid.UUID | str, now: datetime) -> tuple[uuid.UUID, bool] | None:
    """The endpoint of a message's delivery and whether it is active, if the delivery may go now
    (open, due, not leased); None otherwise. On PostgreSQL one hand-written statement: most
    messages find their delivery sent already by a batch, and this is all they cost."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql.NAMED, [uuid.UUID(str(delivery_id)), now, now])
            row = cursor.fetchone()
        return (row[0], row[1]) if row is not None else None
    named = (
        WebhookDelivery.objects.filter(pk=delivery_id, status__in=WebhookDelivery.OPEN, next_attempt_at__lte=now)
        .exclude(leased_until__gt=now)
        .values_list("endpoint_id", "endpoint__is_active")
        .first()
    )
    return (named[0], named[1]) if named is not None else None


def delivery_send(*, delivery_id: uuid.UUID | str, sent_at: str | None = None) -> None:
    """Make the next attempt of a delivery if it is due and may go now, with the other deliveries of
    its endpoint that may go; record them; plan the next.

    Safe to call any number of times (duplicate or early messages do nothing): the claim checks
    the status, the due time and the lease. Never holds a row lock while the receiver answers.
    `sent_at`, when its message was sent: a worker started it, so any message sent earlier down
    the queue and not started yet was lost (the sweep's proof, `deliveries_enqueue_due`).

    The claim leases a batch of the endpoint's free deliveries in one statement; they go out over
    the same kept-alive connection, one request at a time, and their outcomes are written in one
    statement. Every delivery keeps its own outcome, attempts and retry schedule: a failed one
    waits for its own retry, the others are not held back. The task then goes on with the next
    batch, for at most `CHAIN_LIMIT` deliveries or `CHAIN_SECONDS`, then hands on by a message.
    """
    if sent_at:
        queue_reached(WEBHOOK_QUEUE, datetime.fromisoformat(sent_at), throttled=True)
    now = timezone.now()
    named = _named(delivery_id, now)
    if named is None:
        return  # done, dead, leased, or an early or duplicate message: whoever planned it sends it
    endpoint_id, active = named
    if not active:
        _bury_for_disabled_endpoint(delivery_id)
        return
    started, sent = time.monotonic(), 0
    batch = batch_claim(endpoint_id, limit=CHAIN_LIMIT)
    if batch is None or all(d.pk != uuid.UUID(str(delivery_id)) for d in batch.deliveries):
        # Refused (a sender in flight, an earlier event of its subject open) or left for later:
        # this message is spent. The sender in flight hands it on, the sweep if that one dies.
        WebhookDelivery.objects.filter(pk=delivery_id, status__in=WebhookDelivery.OPEN).exclude(
            leased_until__gt=timezone.now()
        ).update(enqueued_at=None)
    while batch is not None:
        attempts = _send_batch(batch)
        sent += len(attempts)
        if batch_record(batch, attempts):
            return  # 410 Gone: the endpoint is disabled, its open deliveries dead
        if sent >= CHAIN_LIMIT or time.monotonic() - started >= CHAIN_SECONDS:
            _hand_on(endpoint_id)
            return
        batch = batch_claim(endpoint_id, limit=CHAIN_LIMIT - sent)


def _send_batch(batch: Batch) -> list[Sent]:
    """POST the batch's deliveries in order while its send window lasts; stop at a `410 Gone`."""
    attempts: list[Sent] = []
    for delivery in batch.deliveries:
        if attempts and not batch.may_still_send():
            break  # the rest goes back unsent, before the lease could run out mid-POST
        started, outcome = _send(delivery, batch.signing)
        attempts.append(Sent(delivery, started, outcome))
        if outcome.status_code == 410:
            break
    return attempts


def _hand_on(endpoint_id: uuid.UUID) -> None:
    """The sender's turn is over: hand the endpoint's next free delivery to the broker. Its task
    claims the batch behind it; the deliveries waiting for the endpoint need nobody else (the
    sweep covers a sender that dies)."""
    now = timezone.now()
    following = free_deliveries(endpoint_id, now).order_by("position").values_list("pk", flat=True).first()
    if following is None:
        return
    with transaction.atomic():
        WebhookDelivery.objects.filter(pk=following).update(enqueued_at=now)
        enqueue_on_commit([following])


def _bury_for_disabled_endpoint(delivery_id: uuid.UUID | str) -> None:
    """A delivery to a disabled endpoint dies, and the later events of its subject go on (each
    message buries its own). The endpoint's row is not locked: deliveries first, as every path."""
    now = timezone.now()
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update()
            .filter(pk=delivery_id, status__in=WebhookDelivery.OPEN)
            .exclude(leased_until__gt=now)
            .first()
        )
        if delivery is None:
            return
        delivery.status = DeliveryStatus.DEAD
        delivery.last_error = "the endpoint is disabled"
        delivery.lease_token = None
        delivery.leased_until = None
        delivery.completed_at = now
        delivery.save()
        wake_next_of_subject(delivery, now)


def _send(delivery: WebhookDelivery, signing: list[str]) -> tuple[datetime, transport.Outcome]:
    """POST one claimed delivery, signed; when the attempt started and what the receiver said.

    With tracing on, the attempt is a span in the event's trace, and the request's `traceparent`
    header names it (the body's `traceparent` names the span that published the event)."""
    with (
        log_scope(
            handler=SEND_WEBHOOK,
            event_id=delivery.event_id,
            tenant_id=delivery.tenant_id,
            correlation_id=delivery.payload.get("correlationid"),
            causation_id=delivery.payload.get("causationid"),
        ),
        tracing.handler_span(
            SEND_WEBHOOK, traceparent=delivery.payload.get("traceparent"), attributes=_span_attributes(delivery)
        ),
    ):
        now = timezone.now()
        body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True)
        headers = {
            "Content-Type": CONTENT_TYPE,
            "User-Agent": "ShelfWise-Webhooks/1",
            "webhook-id": str(delivery.pk),
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": " ".join(
                Webhook(secret).sign(msg_id=str(delivery.pk), timestamp=now, data=body) for secret in signing
            ),
        }
        traceparent = tracing.current_traceparent()
        if traceparent:
            headers["traceparent"] = traceparent
        outcome = transport.post(delivery.endpoint.url, body=body.encode(), headers=headers)
        WEBHOOK_REQUESTS.labels(str(delivery.endpoint_id), outcome_of(outcome.status_code)).observe(
            outcome.duration_ms / 1000
        )
        logger.info(
            "webhook delivery %s to endpoint %s: %s in %d ms",
            delivery.pk,
            delivery.endpoint_id,
            outcome.status_code or outcome.error,
            outcome.duration_ms,
        )
        return now, outcome


def _span_attributes(delivery: WebhookDelivery) -> dict[str, str]:
    if not tracing.enabled():
        return {}
    data = delivery.payload.get("data")
    return {
        **tracing.event_attributes(
            event_type=delivery.event_type,
            event_id=delivery.event_id,
            tenant_id=delivery.tenant_id,
            order_id=data.get("order_id") if isinstance(data, dict) else None,
        ),
        "shelfwise.webhook.endpoint.id": str(delivery.endpoint_id),
        "shelfwise.webhook.delivery.id": str(delivery.pk),
    }
