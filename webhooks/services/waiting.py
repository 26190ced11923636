"""What a delivery waits for: one subject's deliveries to one endpoint go in position order, and an
endpoint has at most `WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT` requests in flight. The next delivery of
a subject is woken when the one before it succeeds or dies.

A sender leases a batch of deliveries under one token and POSTs them one after another, so the
requests in flight to an endpoint are its senders: the live lease tokens (a lease without a token
counts alone)."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services.queue import enqueue_on_commit


def earlier_open_of_subject(endpoint_id, subject, position) -> QuerySet[WebhookDelivery]:
    """Open deliveries to the endpoint of an earlier event of `subject`: one waits for these.
    (Values or `OuterRef`s.) For deliveries already written, `first_open_of_its_subject`."""
    return WebhookDelivery.objects.filter(
        endpoint_id=endpoint_id, subject=subject, status__in=WebhookDelivery.OPEN, position__lt=position
    )


def first_open_of_its_subject() -> Q:
    """A filter of open deliveries: the delivery is the first open one of its subject to its
    endpoint, so nothing earlier holds it back.

    It compares the delivery's position with that of its subject's first open delivery, one probe
    of the (endpoint, subject, position) index per row. Asked as "no earlier open delivery exists",
    PostgreSQL may turn the question into a join and read every open delivery of the endpoint once
    for each row."""
    first = (
        WebhookDelivery.objects.filter(
            endpoint_id=OuterRef("endpoint_id"), subject=OuterRef("subject"), status__in=WebhookDelivery.OPEN
        )
        .order_by("position")
        .values("position")[:1]
    )
    return Q(position=Subquery(first))


def in_flight_to(endpoint_id, now: datetime) -> QuerySet[WebhookDelivery]:
    """The endpoint's deliveries whose sender holds a live lease (a value or an `OuterRef`)."""
    return WebhookDelivery.objects.filter(endpoint_id=endpoint_id, leased_until__gt=now)


def _sender():
    return Coalesce("lease_token", "pk")


def senders_in_flight_to(endpoint_id: uuid.UUID, now: datetime) -> int:
    """How many senders hold live leases on the endpoint's deliveries (each has one request in flight)."""
    return in_flight_to(endpoint_id, now).aggregate(n=Count(_sender(), distinct=True))["n"]


def with_waiting(endpoints: QuerySet[WebhookEndpoint], subject: str, position, now: datetime) -> QuerySet:
    """`endpoints` annotated with what a delivery of `subject` at `position` (a value or an
    expression of the query) would wait for there: `blocked` (an earlier open delivery of the
    subject) and `in_flight` (senders with live leases); `must_wait` reads them."""
    in_flight = (
        in_flight_to(OuterRef("pk"), now)
        .order_by()
        .values("endpoint_id")
        .annotate(n=Count(_sender(), distinct=True))
        .values("n")
    )
    return endpoints.annotate(
        blocked=Exists(earlier_open_of_subject(OuterRef("pk"), subject, position)),
        in_flight=Coalesce(Subquery(in_flight), 0),
    )


def must_wait(endpoint: WebhookEndpoint) -> bool:
    """Whether a delivery to an endpoint of `with_waiting` would have to wait."""
    return endpoint.blocked or endpoint.in_flight >= settings.WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT


def wake_next_of_subject(delivery: WebhookDelivery, now: datetime, *, message: bool = True) -> None:
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
            enqueue_on_commit([following])
