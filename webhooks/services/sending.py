"""Sending: claim a delivery, POST it with no transaction open, record the attempt, plan the retry
or bury it, hand on the endpoint's next delivery; an endpoint that keeps failing, or answers
`410 Gone`, is disabled."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

from django.conf import settings
from django.core.mail import send_mail
from django.db import DatabaseError, transaction
from django.utils import timezone
from standardwebhooks import Webhook

from core import tracing
from core.log_context import log_scope
from domain_events.cloudevents import CONTENT_TYPE
from domain_events.probes import queue_reached
from domain_events.retry import RetryPolicy
from tenants.models import User
from webhooks import transport
from webhooks.metrics import WEBHOOK_REQUESTS, outcome_of
from webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.services.endpoints import signing_secrets
from webhooks.services.queue import SEND_WEBHOOK, WEBHOOK_QUEUE, enqueue_on_commit
from webhooks.services.waiting import earlier_open_of_subject, in_flight_to, wake_next_of_subject

logger = logging.getLogger(__name__)

# A claim outlives the longest request (and the recording of its outcome), so a sender never loses
# its lease mid-POST. No longer: a killed sender's lease holds one of its endpoint's
# `WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT` places until it expires (30 s held a busy endpoint's
# deliveries past the minute of recovery).
LEASE = timedelta(seconds=transport.TOTAL_TIMEOUT + 5)
# A sender goes on with the next delivery of its endpoint while the receiver keeps answering 2xx,
# for at most this many deliveries or seconds in one task; then it hands the next to the broker.
CHAIN_LIMIT = 50
CHAIN_SECONDS = 10.0
HAND_ON_WINDOW = 100
MAX_ERROR_LENGTH = 2000


def delivery_send(*, delivery_id: uuid.UUID | str, sent_at: str | None = None) -> None:
    """Make the next attempt of a delivery if it is due and may go now; record it; plan the next.

    Safe to call any number of times (duplicate or early messages do nothing): the claim checks
    the status, the due time and the lease. Never holds a row lock while the receiver answers.
    `sent_at`, when its message was sent: a worker started it, so any message sent earlier down
    the queue and not started yet was lost (the sweep's proof, `deliveries_enqueue_due`).

    The task then goes on with the endpoint's next free delivery, whatever the outcome, for at
    most `CHAIN_LIMIT` deliveries or `CHAIN_SECONDS`, over the same kept-alive connection: each
    outcome and the claim of the next are written in one transaction. Every delivery keeps its
    own outcome, attempts and retry schedule; a failed one waits for its own retry.
    """
    if sent_at:
        queue_reached(WEBHOOK_QUEUE, datetime.fromisoformat(sent_at), throttled=True)
    started = time.monotonic()
    claimed = _claim(delivery_id)
    sent = 0
    while claimed is not None:
        sent += 1
        delivery, token, signing = claimed
        attempted, outcome = _send(delivery, signing)
        go_on = sent < CHAIN_LIMIT and time.monotonic() - started < CHAIN_SECONDS
        with transaction.atomic():
            endpoint_part = _record(delivery.pk, token, attempted, outcome)
            if endpoint_part is _GONE:
                go_on = False
            following = _hand_on(delivery.endpoint_id, in_this_task=go_on)
            # Deliveries first, the endpoint last: the next claim locks its delivery, then the
            # endpoint; what the outcome changes on the endpoint comes after.
            claimed = _claim_next(following) if following is not None else None
            if endpoint_part is not None and endpoint_part is not _GONE:
                endpoint_part()


def _claim_next(delivery_id: uuid.UUID) -> tuple[WebhookDelivery, uuid.UUID, list[str]] | None:
    """Claim the next delivery in the transaction of the last outcome. Its own savepoint: a claim
    that fails (a deadlock, say) leaves that outcome to commit and the delivery to a message."""
    try:
        return _claim(delivery_id, skip_locked=True)
    except DatabaseError:
        logger.warning("could not claim webhook delivery %s in this task; handed to the broker", delivery_id)
        WebhookDelivery.objects.filter(pk=delivery_id).update(enqueued_at=timezone.now())
        enqueue_on_commit([delivery_id])
        return None


def _hand_on(endpoint_id: uuid.UUID, *, in_this_task: bool) -> uuid.UUID | None:
    """After an attempt: the next delivery of the endpoint that may go (due, not leased, nothing
    earlier of its subject open), oldest event first. Returned for this task to send while its
    turn lasts; otherwise handed to the broker. The deliveries waiting for the endpoint need
    nobody else: each sender hands on one, and the sweep covers a sender that dies.

    It looks at the oldest `HAND_ON_WINDOW` open deliveries of the endpoint (one index range):
    a delivery is free when no earlier one in that window shares its subject."""
    now = timezone.now()
    window = (
        WebhookDelivery.objects.filter(endpoint_id=endpoint_id, status__in=WebhookDelivery.OPEN)
        .order_by("position")
        .values_list("pk", "subject", "next_attempt_at", "leased_until")[:HAND_ON_WINDOW]
    )
    following, subjects = None, set()
    for pk, subject, due, leased_until in window:
        if subject not in subjects and due <= now and (leased_until is None or leased_until <= now):
            following = pk
            break
        subjects.add(subject)
    if following is None or in_this_task:
        return following
    WebhookDelivery.objects.filter(pk=following).update(enqueued_at=now)
    enqueue_on_commit([following])
    return None


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


def _claim(
    delivery_id: uuid.UUID | str, *, skip_locked: bool = False
) -> tuple[WebhookDelivery, uuid.UUID, list[str]] | None:
    """Lease a delivery that is due and may go now. `skip_locked` (a sender going on, with its last
    outcome's rows locked): a delivery another transaction has locked is left to that one, a
    sender that hands it on when done, rather than waited for."""
    now = timezone.now()
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(of=("self",), skip_locked=skip_locked)
            .select_related("endpoint")
            .filter(pk=delivery_id, status__in=WebhookDelivery.OPEN)
            .first()
        )
        if delivery is None or delivery.next_attempt_at > now:
            return None  # done, dead, or an early or duplicate message: whoever planned it sends it
        if delivery.leased_until is not None and delivery.leased_until > now:
            return None  # another sender has it
        # Every path locks deliveries first and the endpoint last: burying wakes the next delivery
        # of the subject, so it is done on the endpoint as read, before its lock is taken.
        if not delivery.endpoint.is_active:
            _bury(delivery, "the endpoint is disabled", now)
            return None
        # Claims of one endpoint take turns, so its in-flight count is exact.
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=delivery.endpoint_id)
        if not endpoint.is_active:
            # Disabled meanwhile. Left to the sweep, whose claim buries it as above.
            delivery.enqueued_at = None
            delivery.save(update_fields=["enqueued_at", "updated_at"])
            return None
        blocker = (
            earlier_open_of_subject(endpoint.pk, delivery.subject, delivery.position)
            .order_by("position")
            .values("pk", "next_attempt_at", "leased_until")
            .first()
        )
        if blocker is not None:
            # Woken when the blocker succeeds or dies; the sweep looks again at its next attempt.
            delivery.next_attempt_at = max(blocker["next_attempt_at"], blocker["leased_until"] or now, now)
            delivery.last_error = f"waiting for an earlier event of {delivery.subject} (delivery {blocker['pk']})"
            delivery.save(update_fields=["next_attempt_at", "last_error", "updated_at"])
            return None
        in_flight = in_flight_to(endpoint.pk, now).exclude(pk=delivery.pk)
        if in_flight.count() >= settings.WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT:
            # A sender in flight hands it on when done (`_hand_on`); the sweep if that one dies.
            delivery.enqueued_at = None
            delivery.save(update_fields=["enqueued_at", "updated_at"])
            return None
        token = uuid.uuid4()
        delivery.lease_token = token
        delivery.leased_until = now + LEASE
        delivery.save(update_fields=["lease_token", "leased_until", "updated_at"])
        delivery.endpoint = endpoint
        return delivery, token, signing_secrets(endpoint.pk, now)


def _gone() -> None:
    """`_record`'s answer once `410 Gone` disabled the endpoint (its part is done already)."""


_GONE = _gone


def _record(
    delivery_id: uuid.UUID, token: uuid.UUID, started: datetime, outcome: transport.Outcome
) -> Callable[[], None] | None:
    """Write the attempt and the delivery's outcome (in the caller's transaction). Returns what the
    outcome changes on the endpoint, for the caller to run last (deliveries before the endpoint),
    `_GONE` once a `410 Gone` disabled it, or None if the claim was lost."""
    now = timezone.now()
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().filter(pk=delivery_id, lease_token=token).first()
        if delivery is None:
            logger.warning("webhook delivery %s lost its claim while sending; outcome dropped", delivery_id)
            return None
        delivery.attempts += 1
        WebhookAttempt.objects.create(
            delivery=delivery,
            number=delivery.attempts,
            started_at=started,
            duration_ms=outcome.duration_ms,
            status_code=outcome.status_code,
            response_body=outcome.body,
            error=outcome.error[:MAX_ERROR_LENGTH],
        )
        delivery.lease_token = None
        delivery.leased_until = None
        delivery.last_status_code = outcome.status_code
        delivery.last_attempt_at = now
        if outcome.succeeded:
            delivery.status = DeliveryStatus.SUCCEEDED
            delivery.last_error = ""
            delivery.completed_at = now
            delivery.save()
            # Deliveries first, the endpoint last, as a claim locks them: a claim of the next
            # delivery holds its row while it waits for the endpoint's, so the other way round
            # the two deadlock (and PostgreSQL fails one: an outcome lost, the POST made again).
            wake_next_of_subject(delivery, now, message=False)  # the sender hands on (`_hand_on`)
            endpoint_id = delivery.endpoint_id
            return lambda: WebhookEndpoint.objects.filter(pk=endpoint_id, failing_since__isnull=False).update(
                failing_since=None
            )
        delivery.last_error = (outcome.error or f"HTTP {outcome.status_code}")[:MAX_ERROR_LENGTH]
        if outcome.status_code == 410:
            _endpoint_gone(delivery, now)
            return _GONE
        _plan_retry(delivery, outcome, now)
        endpoint_id = delivery.endpoint_id
        return lambda: _endpoint_failed(endpoint_id, now)


def _plan_retry(delivery: WebhookDelivery, outcome: transport.Outcome, now: datetime) -> None:
    """The next attempt by `WEBHOOK_RETRY_SCHEDULE`, counted from the start of this round (a
    redelivery starts a fresh one); dead once the schedule is spent."""
    policy = RetryPolicy.of(settings.WEBHOOK_RETRY_SCHEDULE, settings.WEBHOOK_RETRY_JITTER)
    delay = policy.delay(delivery.attempts - delivery.attempts_before_round)
    if delay is None:
        _bury(delivery, delivery.last_error, now)
        logger.warning("webhook delivery %s is dead after %d attempts", delivery.pk, delivery.attempts)
        return
    asked = _retry_after(outcome, now) if outcome.status_code in (429, 503) else None
    if asked is not None:
        # The receiver's own pace, within reason: never longer than the schedule's longest step.
        delay = min(asked, max(policy.schedule))
    delivery.status = DeliveryStatus.FAILED
    delivery.next_attempt_at = now + timedelta(seconds=delay)
    if delay <= settings.WEBHOOK_COUNTDOWN_LIMIT:
        delivery.enqueued_at = now
        enqueue_on_commit([delivery.pk], eta=delivery.next_attempt_at)
    else:
        delivery.enqueued_at = None  # no message: the sweep sends one when it is due
    delivery.save()


def _retry_after(outcome: transport.Outcome, now: datetime) -> float | None:
    value = next((v for k, v in outcome.headers.items() if k.lower() == "retry-after"), "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - now).total_seconds())
    except (TypeError, ValueError):
        return None


def _bury(delivery: WebhookDelivery, error: str, now: datetime) -> None:
    """No attempt left: dead, and the later events of its subject go on."""
    delivery.status = DeliveryStatus.DEAD
    delivery.last_error = error
    delivery.lease_token = None
    delivery.leased_until = None
    delivery.completed_at = now
    delivery.save()
    wake_next_of_subject(delivery, now)


def _endpoint_failed(endpoint_id: uuid.UUID, now: datetime) -> None:
    """Every attempt failing for `WEBHOOK_DISABLE_AFTER_DAYS`: disable the endpoint, tell its staff."""
    WebhookEndpoint.objects.filter(pk=endpoint_id, failing_since__isnull=True).update(failing_since=now)
    cutoff = now - timedelta(days=settings.WEBHOOK_DISABLE_AFTER_DAYS)
    endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id, is_active=True, failing_since__lte=cutoff).first()
    if endpoint is None:
        return
    reason = f"every delivery failed since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC"
    WebhookEndpoint.objects.filter(pk=endpoint_id).update(is_active=False, disabled_reason=reason, updated_at=now)
    logger.warning("webhook endpoint %s disabled: %s", endpoint_id, reason)
    transaction.on_commit(lambda: _tell_staff_endpoint_disabled(endpoint, reason))


def _tell_staff_endpoint_disabled(endpoint: WebhookEndpoint, reason: str) -> None:
    recipients = list(
        User.objects.filter(tenant_id=endpoint.tenant_id, is_staff=True, is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)
    )
    if not recipients:
        return
    try:
        send_mail(
            subject="A webhook endpoint was disabled",
            message=(
                f"The webhook endpoint {endpoint.url} was disabled: {reason}.\n"
                "Fix the receiver, then enable the endpoint again and recover what failed since then."
            ),
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=recipients,
        )
    except Exception:
        logger.exception("could not e-mail the staff about disabled webhook endpoint %s", endpoint.pk)


def _endpoint_gone(delivery: WebhookDelivery, now: datetime) -> None:
    """`410 Gone`: the receiver asks for nothing more. Disable the endpoint; its open deliveries die.

    Deliveries first, the endpoint last, as a claim locks them (a claim holding another delivery
    waits for the endpoint). Open deliveries locked by another sender or claim are skipped rather
    than waited for (two senders told 410 at once would wait for each other's): the claim of each
    finds the endpoint disabled and buries it, or sends it once more and is told 410 too.
    """
    delivery.status = DeliveryStatus.DEAD
    delivery.completed_at = now
    delivery.save()
    others = list(
        WebhookDelivery.objects.select_for_update(skip_locked=True)
        .filter(endpoint_id=delivery.endpoint_id, status__in=WebhookDelivery.OPEN)
        .exclude(pk=delivery.pk)
        .values_list("pk", flat=True)
    )
    WebhookDelivery.objects.filter(pk__in=others).update(
        status=DeliveryStatus.DEAD, last_error="the endpoint is disabled (410 Gone)", completed_at=now, updated_at=now
    )
    WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(
        is_active=False, disabled_reason=f"410 Gone at {now:%Y-%m-%d %H:%M:%S} UTC", updated_at=now
    )
    logger.warning("webhook endpoint %s answered 410 Gone and was disabled", delivery.endpoint_id)
