"""Reads of the webhooks module."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint


def endpoint_list() -> QuerySet[WebhookEndpoint]:
    """Every endpoint, newest first (callers scope it to a tenant)."""
    return WebhookEndpoint.objects.order_by("-created_at", "pk")


def endpoint_get(*, endpoints: QuerySet[WebhookEndpoint], endpoint_id: UUID) -> WebhookEndpoint | None:
    return endpoints.filter(pk=endpoint_id).first()


def delivery_list(*, endpoint: WebhookEndpoint) -> QuerySet[WebhookDelivery]:
    """The endpoint's deliveries, newest first."""
    return WebhookDelivery.objects.filter(endpoint=endpoint).order_by("-created_at", "-position")


def delivery_get(*, endpoint: WebhookEndpoint, delivery_id: UUID) -> WebhookDelivery | None:
    return WebhookDelivery.objects.filter(endpoint=endpoint, pk=delivery_id).first()


def endpoints_with_health(*, endpoints: QuerySet[WebhookEndpoint], hours: int = 24) -> QuerySet[WebhookEndpoint]:
    """`endpoints` with their deliveries of the last `hours` counted by outcome: `recent_succeeded`,
    `recent_open` (pending or retrying) and `recent_dead`."""
    recent = Q(deliveries__created_at__gte=timezone.now() - timedelta(hours=hours))
    return endpoints.annotate(
        recent_succeeded=Count("deliveries", filter=recent & Q(deliveries__status=DeliveryStatus.SUCCEEDED)),
        recent_open=Count("deliveries", filter=recent & Q(deliveries__status__in=WebhookDelivery.OPEN)),
        recent_dead=Count("deliveries", filter=recent & Q(deliveries__status=DeliveryStatus.DEAD)),
    )


def delivery_list_for_subject(*, tenant_id: UUID, subject: str) -> list[WebhookDelivery]:
    """The tenant's deliveries of one aggregate's events (an order's), in position order, with their endpoints."""
    return list(
        WebhookDelivery.objects.filter(tenant_id=tenant_id, subject=subject)
        .select_related("endpoint")
        .order_by("position", "endpoint__url")
    )


def webhook_trouble_for(*, tenant_id: UUID) -> dict[str, int]:
    """How many of the tenant's deliveries are retrying (`failed`) or `dead`, and how many of its
    active endpoints are failing (every attempt failing since `failing_since`)."""
    counts = WebhookDelivery.objects.filter(
        tenant_id=tenant_id, status__in=[DeliveryStatus.FAILED, DeliveryStatus.DEAD]
    ).aggregate(
        failed=Count("pk", filter=Q(status=DeliveryStatus.FAILED)),
        dead=Count("pk", filter=Q(status=DeliveryStatus.DEAD)),
    )
    failing = WebhookEndpoint.objects.filter(tenant_id=tenant_id, is_active=True, failing_since__isnull=False).count()
    return {"failed": counts["failed"], "dead": counts["dead"], "failing_endpoints": failing}
