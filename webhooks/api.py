"""Webhook endpoints over HTTP (docs/api.md), for the tenant's staff.

One class per path; each method is one operation that validates, calls one service and
serializes. The secret is in the create and rotate responses only. Another tenant's endpoint or
delivery is a 404.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from core.errors import NotFound
from core.schema import links_to
from core.serializers import StrictInputSerializer, refuse_any_input
from domain_events.events import published_event_types
from tenants.permissions import IsTenantStaff
from tenants.scoping import TenantApiMixin
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.selectors import delivery_get, delivery_list, endpoint_get, endpoint_list
from webhooks.services import (
    delivery_redeliver,
    endpoint_create,
    endpoint_delete,
    endpoint_recover,
    endpoint_rotate_secret,
    endpoint_update,
)


class EndpointOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    url = serializers.URLField()
    event_types = serializers.ListField(child=serializers.CharField())
    is_active = serializers.BooleanField()
    description = serializers.CharField()
    disabled_reason = serializers.CharField()
    failing_since = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class EndpointWithSecretOutputSerializer(EndpointOutputSerializer):
    secret = serializers.CharField()


class DeliveryOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    event_id = serializers.UUIDField()
    event_type = serializers.CharField()
    subject = serializers.CharField()
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    next_attempt_at = serializers.DateTimeField(allow_null=True, source="next_attempt_at_if_open")
    created_at = serializers.DateTimeField()


# An http(s) URL with a host name or IPv4 address, an optional port and an optional path and query
# of URI characters; no credentials, no fragment. The OpenAPI document gives this pattern, so a
# client can check a URL as the server does (`endpoint_url_validate` then checks where it leads).
URL_PATTERN = (
    r"^https?://[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?"
    r"(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?"
    r"(?:/(?:[A-Za-z0-9._~:/?@!$&'()*+,;=-]|%[0-9A-Fa-f]{2})*)?$"
)


class EndpointFieldsSerializer(StrictInputSerializer):
    url = serializers.RegexField(URL_PATTERN, max_length=2000, error_messages={"invalid": "Enter a valid URL."})
    # The known types are listed in the OpenAPI document; the service checks them again.
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=sorted(cls.type for cls in published_event_types())),
        max_length=50,
        default=list,
    )
    is_active = serializers.BooleanField(default=True)
    description = serializers.CharField(max_length=500, allow_blank=True, default="")


def _page(request: Request, view: APIView, queryset: QuerySet, serializer: type[serializers.Serializer]) -> Response:
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer(page, many=True).data)


def _with_secret(endpoint: WebhookEndpoint, secret: str) -> dict[str, Any]:
    endpoint.secret = secret
    return EndpointWithSecretOutputSerializer(endpoint).data


class WebhookApi(TenantApiMixin, APIView):
    permission_classes = [IsTenantStaff]
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    def endpoint(self, endpoint_id: UUID) -> WebhookEndpoint:
        endpoint = endpoint_get(endpoints=self.scoped(endpoint_list()), endpoint_id=endpoint_id)
        if endpoint is None:
            raise NotFound("No such webhook endpoint.")
        return endpoint


class EndpointListCreateApi(WebhookApi):
    """`GET webhook-endpoints/` lists the tenant's endpoints; `POST` registers one."""

    openapi_links = {
        "POST": {
            "201": links_to(
                "webhook_endpoints_retrieve",
                "webhook_endpoints_partial_update",
                "webhook_endpoints_destroy",
                "webhook_endpoints_rotate_secret",
                "webhook_endpoints_recover",
                "webhook_deliveries_list",
                endpoint_id="$response.body#/id",
            )
        }
    }

    @extend_schema_serializer(component_name="WebhookEndpointCreate")
    class InputSerializer(EndpointFieldsSerializer):
        pass

    @extend_schema(operation_id="webhook_endpoints_list", responses={200: EndpointOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        return _page(request, self, self.scoped(endpoint_list()), EndpointOutputSerializer)

    @extend_schema(
        operation_id="webhook_endpoints_create",
        request=InputSerializer,
        responses={201: EndpointWithSecretOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint, secret = endpoint_create(tenant=self.tenant, **serializer.validated_data)
        return Response(_with_secret(endpoint, secret), status=status.HTTP_201_CREATED)


class EndpointDetailApi(WebhookApi):
    """`GET`, `PATCH` and `DELETE webhook-endpoints/{id}/`."""

    @extend_schema_serializer(component_name="WebhookEndpointUpdate")
    class InputSerializer(EndpointFieldsSerializer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, partial=True, **kwargs)

    @extend_schema(operation_id="webhook_endpoints_retrieve", responses={200: EndpointOutputSerializer})
    def get(self, request: Request, endpoint_id: UUID) -> Response:
        return Response(EndpointOutputSerializer(self.endpoint(endpoint_id)).data)

    @extend_schema(
        operation_id="webhook_endpoints_partial_update",
        request=InputSerializer,
        responses={200: EndpointOutputSerializer},
    )
    def patch(self, request: Request, endpoint_id: UUID) -> Response:
        endpoint = self.endpoint(endpoint_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = endpoint_update(endpoint=endpoint, **serializer.validated_data)
        return Response(EndpointOutputSerializer(endpoint).data)

    @extend_schema(operation_id="webhook_endpoints_destroy", responses={204: None})
    def delete(self, request: Request, endpoint_id: UUID) -> Response:
        endpoint_delete(endpoint=self.endpoint(endpoint_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointRotateSecretApi(WebhookApi):
    """`POST webhook-endpoints/{id}/rotate-secret`: a new secret; the old one signs for 24 h more."""

    @extend_schema(
        operation_id="webhook_endpoints_rotate_secret",
        request=None,
        responses={200: EndpointWithSecretOutputSerializer},
    )
    def post(self, request: Request, endpoint_id: UUID) -> Response:
        endpoint = self.endpoint(endpoint_id)
        refuse_any_input(request.data)
        return Response(_with_secret(endpoint, endpoint_rotate_secret(endpoint=endpoint)))


class EndpointRecoverApi(WebhookApi):
    """`POST webhook-endpoints/{id}/recover`: send again what failed or died since a time."""

    @extend_schema_serializer(component_name="WebhookEndpointRecover")
    class InputSerializer(StrictInputSerializer):
        since = serializers.DateTimeField()

    @extend_schema_serializer(component_name="WebhookEndpointRecovering")
    class OutputSerializer(serializers.Serializer):
        recovering = serializers.IntegerField()

    @extend_schema(
        operation_id="webhook_endpoints_recover",
        request=InputSerializer,
        responses={202: OutputSerializer, 409: OpenApiResponse(description="The endpoint is disabled.")},
    )
    def post(self, request: Request, endpoint_id: UUID) -> Response:
        endpoint = self.endpoint(endpoint_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        count = endpoint_recover(endpoint=endpoint, since=serializer.validated_data["since"])
        return Response(self.OutputSerializer({"recovering": count}).data, status=status.HTTP_202_ACCEPTED)


class DeliveryListApi(WebhookApi):
    """`GET webhook-endpoints/{id}/deliveries/`, newest first."""

    @extend_schema(operation_id="webhook_deliveries_list", responses={200: DeliveryOutputSerializer(many=True)})
    def get(self, request: Request, endpoint_id: UUID) -> Response:
        return _page(request, self, delivery_list(endpoint=self.endpoint(endpoint_id)), DeliveryOutputSerializer)


class DeliveryRedeliverApi(WebhookApi):
    """`POST webhook-endpoints/{id}/deliveries/{id}/redeliver`: send it again now, same webhook-id."""

    @extend_schema(
        operation_id="webhook_deliveries_redeliver",
        request=None,
        responses={
            202: DeliveryOutputSerializer,
            409: OpenApiResponse(description="The endpoint is disabled, or the delivery is being sent right now."),
        },
    )
    def post(self, request: Request, endpoint_id: UUID, delivery_id: UUID) -> Response:
        delivery: WebhookDelivery | None = delivery_get(endpoint=self.endpoint(endpoint_id), delivery_id=delivery_id)
        if delivery is None:
            raise NotFound("No such delivery.")
        refuse_any_input(request.data)
        delivery = delivery_redeliver(delivery=delivery)
        return Response(DeliveryOutputSerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
