"""Claims and outcomes of a batch: a sender leases several of an endpoint's deliveries in one
statement and writes what each of their attempts came to in one statement, each delivery with its
own attempts, retry schedule and lease check.

Every path locks in one order: a claim locks the endpoint, then takes deliveries with `SKIP
LOCKED`, so it never waits for a delivery's lock while it holds the endpoint's; an outcome locks
its deliveries, then the deliveries it wakes, and the endpoint last. A claim holding the endpoint
waits for nobody, so nobody waits for it in a cycle.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from domain_events.retry import RetryPolicy
from tenants.models import User
from webhooks import sql, transport
from webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.services.endpoints import signing_secrets, with_signing_secrets
from webhooks.services.queue import enqueue_on_commit
from webhooks.services.waiting import first_open_of_its_subject, senders_in_flight_to

logger = logging.getLogger(__name__)

# A batch's POSTs start within `SEND_WINDOW` seconds of its claim; what is left then goes back
# unsent. Its lease outlives the last of them (and the recording of its outcome), so a sender never
# loses its claim mid-POST. No longer: a killed sender's lease holds one of its endpoint's
# `WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT` places until it expires (30 s held a busy endpoint's
# deliveries past the minute of recovery).
SEND_WINDOW = 5.0
LEASE = timedelta(seconds=SEND_WINDOW + transport.TOTAL_TIMEOUT + 5)
MAX_ERROR_LENGTH = 2000


@dataclass
class Batch:
    """Deliveries of one endpoint leased under one token, oldest event first, and their signing secrets."""

    endpoint: WebhookEndpoint
    token: uuid.UUID
    deliveries: list[WebhookDelivery]
    signing: list[str]
    claimed_at: float = field(default_factory=time.monotonic)

    def may_still_send(self) -> bool:
        return time.monotonic() - self.claimed_at < SEND_WINDOW


@dataclass
class Sent:
    """One attempt of a batch: the delivery, when its POST started and what the receiver said."""

    delivery: WebhookDelivery
    started: datetime
    outcome: transport.Outcome


def free_deliveries(endpoint_id: uuid.UUID, now: datetime) -> QuerySet[WebhookDelivery]:
    """The endpoint's deliveries that may go now: open, due, not leased, and no earlier event of
    their subject open for the endpoint (so at most one per subject)."""
    return (
        WebhookDelivery.objects.filter(
            endpoint_id=endpoint_id, status__in=WebhookDelivery.OPEN, next_attempt_at__lte=now
        )
        .exclude(leased_until__gt=now)
        .filter(first_open_of_its_subject())
    )


def batch_claim(endpoint_id: uuid.UUID, *, limit: int) -> Batch | None:
    """Lease up to `limit` of the endpoint's free deliveries, oldest event first, under one token;
    None if the endpoint is disabled, has as many senders in flight as allowed, or has nothing free.

    Claims of one endpoint take turns on its row, so the count of senders in flight is exact. A
    batch is one sender: one request in flight at a time, over one kept-alive connection.
    """
    now = timezone.now()
    token = uuid.uuid4()
    with transaction.atomic():
        # No key update: a delivery inserted by the fan-out (whose foreign key shares the row) goes on.
        endpoints = WebhookEndpoint.objects.select_for_update(no_key=True).filter(pk=endpoint_id, is_active=True)
        if connection.vendor == "postgresql":
            endpoints = with_signing_secrets(endpoints, now)
        endpoint = endpoints.first()
        if endpoint is None:
            return None
        picked = free_deliveries(endpoint_id, now).order_by("position").values("pk")
        most = settings.WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT
        if connection.vendor == "postgresql":
            # The senders in flight are counted by the lease's own statement (`sql.LEASE`).
            locked = picked.select_for_update(skip_locked=True)[:limit]
            subquery, params = locked.query.sql_with_params()
            statement = sql.LEASE.format(picked=subquery)
            raw = WebhookDelivery.objects.raw(statement, [token, now + LEASE, now, *params, endpoint_id, now, most])
            deliveries = sorted(raw, key=lambda d: d.position)
        elif senders_in_flight_to(endpoint_id, now) >= most:
            return None
        else:  # SQLite: one writer at a time, nothing to skip
            ids = [row["pk"] for row in picked[:limit]]
            WebhookDelivery.objects.filter(pk__in=ids).update(
                lease_token=token, leased_until=now + LEASE, updated_at=now
            )
            deliveries = list(WebhookDelivery.objects.filter(pk__in=ids).order_by("position"))
        if not deliveries:
            return None
        for delivery in deliveries:
            delivery.endpoint = endpoint
        signing = endpoint.signing if connection.vendor == "postgresql" else signing_secrets(endpoint.pk, now)
        return Batch(endpoint, token, deliveries, signing)


def batch_record(batch: Batch, sent: list[Sent]) -> bool:
    """Write the attempts of a batch and what each came to, and give back the deliveries it did
    not send; in one transaction, in a bounded number of statements. Returns True once a `410
    Gone` disabled the endpoint.

    Each attempted delivery succeeds, is retried on its own schedule, or dies; a success or a death
    wakes the next event of its subject. Deliveries first, the endpoint last, as a claim locks them.
    """
    now = timezone.now()
    for attempt in sent:
        _apply(attempt, now)
    attempted = {attempt.delivery.pk for attempt in sent}
    unsent = [d.pk for d in batch.deliveries if d.pk not in attempted]
    with transaction.atomic():
        # The sender goes on with what this wakes, or hands it on (`sending.delivery_send`).
        recorded = _write_outcomes(sent, batch.endpoint.pk, batch.token, now)
        if unsent:
            WebhookDelivery.objects.filter(pk__in=unsent, lease_token=batch.token).update(
                lease_token=None, leased_until=None, updated_at=now
            )
        lost = attempted - recorded
        if lost:
            logger.warning("webhook deliveries %s lost their claim while sending; outcomes dropped", sorted(lost))
        kept = [attempt for attempt in sent if attempt.delivery.pk in recorded]
        for attempt in kept:
            if attempt.delivery.status == DeliveryStatus.FAILED and attempt.delivery.enqueued_at is not None:
                enqueue_on_commit([attempt.delivery.pk], eta=attempt.delivery.next_attempt_at)
            elif attempt.delivery.status == DeliveryStatus.DEAD and attempt.outcome.status_code != 410:
                logger.warning(
                    "webhook delivery %s is dead after %d attempts", attempt.delivery.pk, attempt.delivery.attempts
                )
        if connection.vendor != "postgresql":  # the outcomes' statement woke them on PostgreSQL
            ended = {a.delivery.subject for a in kept if a.delivery.status not in WebhookDelivery.OPEN}
            _wake_next_of_subjects(batch.endpoint.pk, ended, now)
        if not kept:
            return False
        last = kept[-1].outcome
        if any(attempt.outcome.status_code == 410 for attempt in kept):
            _endpoint_gone(batch.endpoint.pk, now)
            return True
        if last.succeeded:
            WebhookEndpoint.objects.filter(pk=batch.endpoint.pk, failing_since__isnull=False).update(failing_since=None)
        else:
            # Failing since its first failure after its last success: in this batch, if it had one.
            _endpoint_failed(batch.endpoint.pk, now, since_now=any(a.outcome.succeeded for a in kept))
        return False


def _write_outcomes(sent: list[Sent], endpoint_id: uuid.UUID, token: uuid.UUID, now: datetime) -> set[uuid.UUID]:
    """One statement for every attempted delivery still under `token`, with its attempt's log row
    and, on PostgreSQL, the next of each subject it ended woken; the ids it wrote."""
    if not sent:
        return set()
    if connection.vendor == "postgresql":
        params: list[object] = []
        for attempt in sent:
            d, outcome = attempt.delivery, attempt.outcome
            params += [
                d.pk,
                token,
                d.status,
                d.last_status_code,
                d.last_error,
                d.next_attempt_at,
                d.enqueued_at,
                d.completed_at,
                attempt.started,
                outcome.duration_ms,
                outcome.body,
                outcome.error[:MAX_ERROR_LENGTH],
            ]
        with connection.cursor() as cursor:
            statement = sql.OUTCOMES.format(rows=", ".join([sql.OUTCOME_ROW] * len(sent)))
            cursor.execute(statement, [*params, now, now, now, now, endpoint_id])
            return {row[0] for row in cursor.fetchall()}
    recorded = set()
    for attempt in sent:  # SQLite: one writer at a time
        d = attempt.delivery
        if WebhookDelivery.objects.filter(pk=d.pk, lease_token=token).update(
            status=d.status,
            attempts=d.attempts,
            lease_token=None,
            leased_until=None,
            last_status_code=d.last_status_code,
            last_error=d.last_error,
            last_attempt_at=now,
            next_attempt_at=d.next_attempt_at,
            enqueued_at=d.enqueued_at,
            completed_at=d.completed_at,
            updated_at=now,
        ):
            recorded.add(d.pk)
            WebhookAttempt.objects.create(
                delivery_id=d.pk,
                number=d.attempts,
                started_at=attempt.started,
                duration_ms=attempt.outcome.duration_ms,
                status_code=attempt.outcome.status_code,
                response_body=attempt.outcome.body,
                error=attempt.outcome.error[:MAX_ERROR_LENGTH],
            )
    return recorded


def _apply(attempt: Sent, now: datetime) -> None:
    """What the attempt makes of its delivery (in memory): succeeded, retried by the schedule, or dead."""
    delivery, outcome = attempt.delivery, attempt.outcome
    delivery.attempts += 1
    delivery.last_status_code = outcome.status_code
    if outcome.succeeded:
        delivery.status = DeliveryStatus.SUCCEEDED
        delivery.last_error = ""
        delivery.completed_at = now
        return
    delivery.last_error = (outcome.error or f"HTTP {outcome.status_code}")[:MAX_ERROR_LENGTH]
    if outcome.status_code == 410:
        delivery.status = DeliveryStatus.DEAD
        delivery.completed_at = now
        return
    _plan_retry(delivery, outcome, now)


def _plan_retry(delivery: WebhookDelivery, outcome: transport.Outcome, now: datetime) -> None:
    """The next attempt by `WEBHOOK_RETRY_SCHEDULE`, counted from the start of this round (a
    redelivery starts a fresh one); dead once the schedule is spent."""
    policy = RetryPolicy.of(settings.WEBHOOK_RETRY_SCHEDULE, settings.WEBHOOK_RETRY_JITTER)
    delay = policy.delay(delivery.attempts - delivery.attempts_before_round)
    if delay is None:
        delivery.status = DeliveryStatus.DEAD
        delivery.completed_at = now
        return
    asked = _retry_after(outcome, now) if outcome.status_code in (429, 503) else None
    if asked is not None:
        # The receiver's own pace, within reason: never longer than the schedule's longest step.
        delay = min(asked, max(policy.schedule))
    delivery.status = DeliveryStatus.FAILED
    delivery.next_attempt_at = now + timedelta(seconds=delay)
    # Near: a message with a countdown. Far: none, the sweep sends one when it is due.
    delivery.enqueued_at = now if delay <= settings.WEBHOOK_COUNTDOWN_LIMIT else None


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


def _wake_next_of_subjects(endpoint_id: uuid.UUID, subjects: set[str], now: datetime) -> None:
    """The first open delivery of each of `subjects` (their earlier one just ended) becomes due, in
    one statement; no message: the sender goes on with it or hands it on."""
    if not subjects:
        return
    WebhookDelivery.objects.filter(
        first_open_of_its_subject(),
        endpoint_id=endpoint_id,
        subject__in=sorted(subjects),
        status__in=WebhookDelivery.OPEN,
    ).update(next_attempt_at=now, enqueued_at=None, last_error="", updated_at=now)


def _endpoint_failed(endpoint_id: uuid.UUID, now: datetime, *, since_now: bool = False) -> None:
    """Every attempt failing for `WEBHOOK_DISABLE_AFTER_DAYS`: disable the endpoint, tell its staff.
    `since_now`: it answered earlier in the batch, so it has been failing only since now."""
    failing = WebhookEndpoint.objects.filter(pk=endpoint_id)
    (failing if since_now else failing.filter(failing_since__isnull=True)).update(failing_since=now)
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


def _endpoint_gone(endpoint_id: uuid.UUID, now: datetime) -> None:
    """`410 Gone`: the receiver asks for nothing more. Disable the endpoint; its open deliveries die.

    Deliveries first, the endpoint last, as every path locks them. Open deliveries locked by
    another sender or claim are skipped rather than waited for (two senders told 410 at once would
    wait for each other's): the claim of each finds the endpoint disabled and buries it, or sends
    it once more and is told 410 too.
    """
    others = list(
        WebhookDelivery.objects.select_for_update(skip_locked=True)
        .filter(endpoint_id=endpoint_id, status__in=WebhookDelivery.OPEN)
        .values_list("pk", flat=True)
    )
    WebhookDelivery.objects.filter(pk__in=others).update(
        status=DeliveryStatus.DEAD,
        last_error="the endpoint is disabled (410 Gone)",
        completed_at=now,
        updated_at=now,
    )
    WebhookEndpoint.objects.filter(pk=endpoint_id).update(
        is_active=False, disabled_reason=f"410 Gone at {now:%Y-%m-%d %H:%M:%S} UTC", updated_at=now
    )
    logger.warning("webhook endpoint %s answered 410 Gone and was disabled", endpoint_id)
