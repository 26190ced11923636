"""Writes of the webhooks module: endpoints and their secrets, fan-out, sending, redelivery.

How a delivery travels:
1. `deliveries_fan_out` (an in-process handler of every event, in the executor's transaction,
   so effectively once) writes one `WebhookDelivery` per matching active endpoint, and asks for a
   Celery message (queue `webhooks`) once that commits.
   A delivery that would have to wait (an earlier event of its subject still open for the
   endpoint, or the endpoint at its in-flight limit) gets no message.
2. `delivery_send` (the Celery task) claims the delivery in a short transaction: due, not
   leased, the endpoint under its in-flight limit, and no earlier event of the same subject
   still open for the endpoint. It POSTs with no transaction open, then records the attempt,
   fenced by its lease token, and hands on the endpoint's next delivery that may go: while the
   receiver answers 2xx it sends it in the same task (up to `CHAIN_LIMIT` deliveries or
   `CHAIN_SECONDS`), otherwise as a message. Waiting deliveries cost no message and no claim.
3. Retries come back as Celery messages with a countdown when they are near; far ones, and
   anything whose sender or message was lost, are handed on by `deliveries_enqueue_due`, the
   sweep of `send_due_webhooks`.

The at-least-once window: a worker killed after the receiver answered and before the attempt
was recorded sends again; the `webhook-id` (the delivery's id) is the same, so the receiver can
drop the copy.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import secrets
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone
from standardwebhooks import Webhook

from core.errors import ApplicationError, Conflict
from core.log_context import log_scope
from domain_events.cloudevents import CONTENT_TYPE, to_cloudevent
from domain_events.events import DomainEvent, published_event_types
from domain_events.models import StoredEvent
from tenants.models import Tenant, User
from webhooks import transport
from webhooks.metrics import WEBHOOK_REQUESTS, outcome_of
from webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookSecret

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"  # noqa: S105  (the Standard Webhooks prefix, not a secret)
SECRET_BYTES = 32
# After a rotation the old secret keeps signing this long.
SECRET_OVERLAP = timedelta(hours=24)
# A claim outlives the longest request, so a sender never loses its lease mid-POST.
LEASE = timedelta(seconds=transport.TOTAL_TIMEOUT + 20)
# A sender goes on with the next delivery of its endpoint while the receiver keeps answering 2xx,
# for at most this many deliveries or seconds in one task; then it hands the next to the broker.
CHAIN_LIMIT = 50
CHAIN_SECONDS = 10.0
HAND_ON_WINDOW = 100
MAX_ERROR_LENGTH = 2000


class EndpointDisabled(Conflict):
    """The endpoint is disabled: enable it before sending to it again."""


def endpoint_url_validate(url: str) -> None:
    """Raise `ValidationError` on `url` unless it is http(s), names a host, carries no credentials,
    and (unless private networks are allowed) does not resolve to loopback or private space.

    Delivery checks the address again when it connects: a name may resolve elsewhere later.
    """
    problem = _url_problem(url)
    if problem:
        raise ValidationError({"url": [problem]})


def _url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "Enter a valid URL."
    if parts.scheme not in ("http", "https"):
        return "Use an http or https URL."
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "Leave credentials out of the URL; verify the webhook signature instead."
    if not parts.hostname:
        return "The URL needs a host."
    if settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS:
        return None  # every address is allowed: no lookup needed
    try:
        found = socket.getaddrinfo(parts.hostname, port or 443, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return None  # not resolvable now; delivery decides
    for *_, sockaddr in found:
        reason = transport.address_refusal(sockaddr[0])
        if reason:
            return f"The host resolves to {reason}."
    return None


def event_types_validate(event_types: Sequence[str]) -> None:
    """Raise `ValidationError` unless every type is a known event type."""
    known = {cls.type for cls in published_event_types()}
    unknown = sorted(set(event_types) - set(known))
    if unknown:
        raise ValidationError({"event_types": [f"Unknown event type: {t}." for t in unknown]})


# --- endpoints ----------------------------------------------------------------------------------


def _new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


@transaction.atomic
def endpoint_create(
    *, tenant: Tenant, url: str, event_types: Sequence[str] = (), is_active: bool = True, description: str = ""
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; returns it and its first secret (shown to the caller this once).

    Raises `ValidationError` for a URL that may not be used or an unknown event type.
    """
    endpoint_url_validate(url)
    event_types_validate(event_types)
    endpoint = WebhookEndpoint.objects.create(
        tenant=tenant, url=url, event_types=list(event_types), is_active=is_active, description=description
    )
    secret = WebhookSecret.objects.create(endpoint=endpoint, secret=_new_secret())
    return endpoint, secret.secret


def endpoint_update(*, endpoint: WebhookEndpoint, **changes: object) -> WebhookEndpoint:
    """Change `url`, `event_types`, `is_active` or `description`. Enabling clears why it was
    disabled and since when it was failing.

    Raises `ValidationError` as `endpoint_create` does.
    """
    allowed = {"url", "event_types", "is_active", "description"}
    unknown = set(changes) - allowed
    if unknown:
        raise ApplicationError(f"cannot change {', '.join(sorted(unknown))}")
    if "url" in changes:
        endpoint_url_validate(str(changes["url"]))
    if "event_types" in changes:
        event_types_validate(list(changes["event_types"]))
    for name, value in changes.items():
        setattr(endpoint, name, list(value) if name == "event_types" else value)
    if changes.get("is_active"):
        # A fresh start: its failures before it was disabled do not count against it again.
        endpoint.disabled_reason = ""
        endpoint.failing_since = None
    endpoint.save()
    return endpoint


def endpoint_set_active(*, endpoint: WebhookEndpoint, is_active: bool) -> WebhookEndpoint:
    """Enable or disable an endpoint (the admin's actions)."""
    return endpoint_update(endpoint=endpoint, is_active=is_active)


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Remove the endpoint with its secrets and delivery history."""
    endpoint.delete()


@transaction.atomic
def endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> str:
    """A new signing secret; the current ones keep signing for `SECRET_OVERLAP`. Returns the new one."""
    now = timezone.now()
    WebhookSecret.objects.filter(endpoint=endpoint, expires_at__isnull=True).update(expires_at=now + SECRET_OVERLAP)
    WebhookSecret.objects.filter(endpoint=endpoint, expires_at__lte=now).delete()
    return WebhookSecret.objects.create(endpoint=endpoint, secret=_new_secret()).secret


def _signing_secrets(endpoint_id: uuid.UUID, now: datetime) -> list[str]:
    return list(
        WebhookSecret.objects.filter(endpoint_id=endpoint_id)
        .exclude(expires_at__lte=now)
        .order_by("-created_at")
        .values_list("secret", flat=True)
    )


# --- what a delivery waits for ------------------------------------------------------------------


def _earlier_open_of_subject(endpoint_id, subject, position) -> QuerySet[WebhookDelivery]:
    """Open deliveries to the endpoint of an earlier event of `subject`: one waits for these.
    (Values or `OuterRef`s.)"""
    return WebhookDelivery.objects.filter(
        endpoint_id=endpoint_id, subject=subject, status__in=WebhookDelivery.OPEN, position__lt=position
    )


def _in_flight(endpoint_id, now: datetime) -> QuerySet[WebhookDelivery]:
    """The endpoint's deliveries whose sender holds a live lease (a value or an `OuterRef`)."""
    return WebhookDelivery.objects.filter(endpoint_id=endpoint_id, leased_until__gt=now)


# --- fan-out ------------------------------------------------------------------------------------


def deliveries_fan_out(*, event: DomainEvent) -> list[WebhookDelivery]:
    """One delivery of `event` per active endpoint of its tenant that wants its type (idempotent).

    Runs in the executor's transaction, so the deliveries are written once however often the
    event is handed to it; their messages go to the broker once that transaction commits.
    """
    endpoints = [
        e for e in WebhookEndpoint.objects.filter(tenant_id=event.tenant_id, is_active=True) if e.wants(event.type)
    ]
    if not endpoints:
        return []
    position = StoredEvent.objects.filter(event_id=event.event_id).values_list("position", flat=True).get()
    payload = to_cloudevent(event, position=position)
    now = timezone.now()
    # A delivery that cannot go now (an earlier event of its subject is still open for the
    # endpoint, or the endpoint has as many requests in flight as allowed) gets no message: the
    # sender ahead of it hands it on when it is done (`_hand_on`), the sweep if that sender dies.
    waiting = _endpoints_to_wait_for([e.pk for e in endpoints], payload["subject"], position, now)
    deliveries = WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                tenant_id=event.tenant_id,
                endpoint=endpoint,
                event_id=event.event_id,
                event_type=event.type,
                subject=payload["subject"],
                position=position,
                payload=payload,
                next_attempt_at=now,
                enqueued_at=None if endpoint.pk in waiting else now,
            )
            for endpoint in endpoints
        ],
        ignore_conflicts=True,
    )
    _enqueue_on_commit([d.pk for d in deliveries if d.endpoint_id not in waiting])
    return deliveries


def _endpoints_to_wait_for(
    endpoint_ids: Sequence[uuid.UUID], subject: str, position: int, now: datetime
) -> set[uuid.UUID]:
    """Of `endpoint_ids`: those where a delivery of `subject` at `position` would have to wait
    (an earlier open delivery of the subject, or the in-flight limit reached), in one query."""
    blocked = _earlier_open_of_subject(OuterRef("pk"), subject, position)
    in_flight = _in_flight(OuterRef("pk"), now).order_by().values("endpoint_id").annotate(n=Count("pk")).values("n")
    rows = (
        WebhookEndpoint.objects.filter(pk__in=endpoint_ids)
        .annotate(blocked=Exists(blocked), in_flight=Coalesce(Subquery(in_flight), 0))
        .values_list("pk", "blocked", "in_flight")
    )
    limit = settings.WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT
    return {pk for pk, is_blocked, flying in rows if is_blocked or flying >= limit}


def _enqueue_on_commit(delivery_ids: Iterable[uuid.UUID], *, eta: datetime | None = None) -> None:
    ids = [str(i) for i in delivery_ids]
    if ids:
        transaction.on_commit(lambda: _enqueue(ids, eta=eta))


def _enqueue(delivery_ids: Sequence[str], *, eta: datetime | None = None) -> None:
    """Send one Celery message per delivery; a broker outage is left to the sweep."""
    from webhooks.tasks import send_webhook  # the task module imports this one

    for delivery_id in delivery_ids:
        try:
            send_webhook.apply_async(args=[delivery_id], eta=eta)
        except Exception:
            logger.warning("could not hand webhook delivery %s to the broker; the sweep will", delivery_id)


# --- sending ------------------------------------------------------------------------------------


def delivery_send(*, delivery_id: uuid.UUID | str) -> None:
    """Make the next attempt of a delivery if it is due and may go now; record it; plan the next.

    Safe to call any number of times (duplicate or early messages do nothing): the claim checks
    the status, the due time and the lease. Never holds a row lock while the receiver answers.
    """
    started = time.monotonic()
    for sent in range(1, CHAIN_LIMIT + 1):
        claimed = _claim(delivery_id)
        if claimed is None:
            return
        endpoint_id = claimed[0].endpoint_id
        succeeded = _send(*claimed)
        go_on = succeeded and sent < CHAIN_LIMIT and time.monotonic() - started < CHAIN_SECONDS
        following = _hand_on(endpoint_id, in_this_task=go_on)
        if following is None:
            return
        delivery_id = following


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
    _enqueue([str(following)])
    return None


def _send(delivery: WebhookDelivery, token: uuid.UUID, signing: list[str]) -> bool:
    """POST one claimed delivery and record the outcome; whether the receiver took it."""
    with log_scope(
        handler="webhooks.send_webhook",
        event_id=delivery.event_id,
        tenant_id=delivery.tenant_id,
        correlation_id=delivery.payload.get("correlationid"),
        causation_id=delivery.payload.get("causationid"),
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
        outcome = transport.post(delivery.endpoint.url, body=body.encode(), headers=headers)
        WEBHOOK_REQUESTS.labels(str(delivery.endpoint_id), outcome_of(outcome.status_code)).observe(
            outcome.duration_ms / 1000
        )
        _record(delivery.pk, token, now, outcome)
        logger.info(
            "webhook delivery %s to endpoint %s: %s in %d ms",
            delivery.pk,
            delivery.endpoint_id,
            outcome.status_code or outcome.error,
            outcome.duration_ms,
        )
        return outcome.succeeded


def _claim(delivery_id: uuid.UUID | str) -> tuple[WebhookDelivery, uuid.UUID, list[str]] | None:
    now = timezone.now()
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(of=("self",))
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
            _earlier_open_of_subject(endpoint.pk, delivery.subject, delivery.position)
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
        in_flight = _in_flight(endpoint.pk, now).exclude(pk=delivery.pk)
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
        return delivery, token, _signing_secrets(endpoint.pk, now)


def _record(delivery_id: uuid.UUID, token: uuid.UUID, started: datetime, outcome: transport.Outcome) -> None:
    now = timezone.now()
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().filter(pk=delivery_id, lease_token=token).first()
        if delivery is None:
            logger.warning("webhook delivery %s lost its claim while sending; outcome dropped", delivery_id)
            return
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
            _wake_next_of_subject(delivery, now, message=False)  # the sender hands on (`_hand_on`)
            WebhookEndpoint.objects.filter(pk=delivery.endpoint_id, failing_since__isnull=False).update(
                failing_since=None
            )
            return
        delivery.last_error = (outcome.error or f"HTTP {outcome.status_code}")[:MAX_ERROR_LENGTH]
        if outcome.status_code == 410:
            _endpoint_gone(delivery, now)
            return
        _plan_retry(delivery, outcome, now)
        _endpoint_failed(delivery.endpoint_id, now)


def _plan_retry(delivery: WebhookDelivery, outcome: transport.Outcome, now: datetime) -> None:
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    step = delivery.attempts - delivery.attempts_before_round
    if step > len(schedule):
        _bury(delivery, delivery.last_error, now)
        logger.warning("webhook delivery %s is dead after %d attempts", delivery.pk, delivery.attempts)
        return
    delay = schedule[step - 1] * random.uniform(1 - settings.WEBHOOK_RETRY_JITTER, 1 + settings.WEBHOOK_RETRY_JITTER)
    asked = _retry_after(outcome, now) if outcome.status_code in (429, 503) else None
    if asked is not None:
        # The receiver's own pace, within reason: never longer than the schedule's longest step.
        delay = min(asked, max(schedule))
    delivery.status = DeliveryStatus.FAILED
    delivery.next_attempt_at = now + timedelta(seconds=delay)
    if delay <= settings.WEBHOOK_COUNTDOWN_LIMIT:
        delivery.enqueued_at = now
        _enqueue_on_commit([delivery.pk], eta=delivery.next_attempt_at)
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
    _wake_next_of_subject(delivery, now)


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


def _wake_next_of_subject(delivery: WebhookDelivery, now: datetime, *, message: bool = True) -> None:
    """The next open delivery of the subject becomes due; with `message`, it is handed to the broker."""
    following = (
        WebhookDelivery.objects.filter(
            endpoint_id=delivery.endpoint_id,
            subject=delivery.subject,
            status__in=WebhookDelivery.OPEN,
            position__gt=delivery.position,
        )
        .order_by("position")
        .values_list("pk", flat=True)
        .first()
    )
    if following is not None:
        WebhookDelivery.objects.filter(pk=following).update(
            next_attempt_at=now, enqueued_at=now if message else None, last_error="", updated_at=now
        )
        if message:
            _enqueue_on_commit([following])


# --- sending again ------------------------------------------------------------------------------


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
    _enqueue_on_commit(d.pk for d in deliveries)


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
    """
    now = timezone.now()
    grace = timedelta(seconds=settings.WEBHOOK_SWEEP_GRACE)
    with transaction.atomic():
        ids = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(status__in=WebhookDelivery.OPEN, next_attempt_at__lte=now - grace)
            .exclude(leased_until__gt=now)
            .exclude(enqueued_at__gt=now - timedelta(seconds=settings.WEBHOOK_SWEEP_RESEND_AFTER))
            # One waiting behind an earlier open event of its subject could only be refused: it is
            # woken when that one ends. Handing those on flooded the queue with refusals ahead of
            # the deliveries that could go, and a backlog drained at a few sends a second.
            .exclude(
                Exists(_earlier_open_of_subject(OuterRef("endpoint_id"), OuterRef("subject"), OuterRef("position")))
            )
            # Nor one whose endpoint has a request in flight: that sender hands on the next.
            .exclude(Exists(_in_flight(OuterRef("endpoint_id"), now)))
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:limit]
        )
        WebhookDelivery.objects.filter(pk__in=ids).update(enqueued_at=now)
        _enqueue_on_commit(ids)
    return len(ids)
