"""The read side's HTTP API (docs/api.md), for the bookstore's staff: the dashboard, the events
feed and an order's timeline. Each view validates its input, calls one selector and serializes,
reading from the replica when one serves the read side (`core.replica`)."""

from __future__ import annotations

from uuid import UUID

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from analytics.selectors import dashboard_get, event_feed_for, order_timeline_for
from core.errors import NotFound
from core.replica import reads_from_replica
from core.serializers import StrictQuerySerializer
from tenants.permissions import IsTenantStaff
from tenants.scoping import TenantApiMixin

MONEY = {"max_digits": 14, "decimal_places": 2}


class DashboardApi(TenantApiMixin, APIView):
    """This month's figures of the bookstore, from the read models."""

    permission_classes = [IsTenantStaff]

    @extend_schema_serializer(component_name="Dashboard")
    class OutputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="DashboardTopProduct")
        class TopProductSerializer(serializers.Serializer):
            sku = serializers.CharField()
            title = serializers.CharField()
            units = serializers.IntegerField()
            revenue = serializers.DecimalField(**MONEY)

        @extend_schema_serializer(component_name="DashboardDay")
        class DaySerializer(serializers.Serializer):
            date = serializers.DateField()
            orders = serializers.IntegerField()
            revenue = serializers.DecimalField(**MONEY)

        orders_this_month = serializers.IntegerField()
        revenue_this_month = serializers.DecimalField(**MONEY)
        pending_fulfillment = serializers.IntegerField()
        cancelled_this_month = serializers.IntegerField()
        average_order_value = serializers.DecimalField(**MONEY)
        top_products = TopProductSerializer(many=True)
        daily_revenue = DaySerializer(many=True)
        updated_at = serializers.DateTimeField(allow_null=True)
        position = serializers.IntegerField(help_text="The last event position the figures include.")

    @extend_schema(
        operation_id="dashboard_retrieve",
        description=(
            "This month's figures in the bookstore's timezone. Orders count in the month they were placed; "
            "revenue counts paid (confirmed or fulfilled) orders. `top_products` ranks all-time units sold."
        ),
        responses=OutputSerializer,
    )
    @reads_from_replica()
    def get(self, request: Request) -> Response:
        return Response(self.OutputSerializer(dashboard_get(tenant=self.tenant)).data)


class EventFeedApi(TenantApiMixin, APIView):
    """The bookstore's events in position order, as CloudEvents; follow `after` to read on."""

    permission_classes = [IsTenantStaff]

    class FilterSerializer(StrictQuerySerializer):
        after = serializers.IntegerField(
            min_value=0, max_value=2**63 - 1, default=0, help_text="The last position already read."
        )
        limit = serializers.IntegerField(min_value=1, max_value=1000, default=100)

    @extend_schema(
        operation_id="events_list",
        parameters=[FilterSerializer],
        responses={
            200: inline_serializer(
                "EventPage",
                {
                    "count": serializers.IntegerField(),
                    "next": serializers.URLField(allow_null=True),
                    "previous": serializers.URLField(allow_null=True),
                    "results": serializers.ListField(child=serializers.DictField()),
                },
            ),
            400: OpenApiResponse(OpenApiTypes.OBJECT, description="A bad `after` or `limit`."),
        },
    )
    @reads_from_replica()
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        after, limit = filters.validated_data["after"], filters.validated_data["limit"]
        page = event_feed_for(tenant_id=self.tenant.id, after=after, limit=limit)
        next_url = None
        if page.remaining > len(page.events):
            url = replace_query_param(request.build_absolute_uri(), "after", page.events[-1]["position"])
            next_url = replace_query_param(url, "limit", limit)
        return Response({"count": page.remaining, "next": next_url, "previous": None, "results": page.events})


class OrderTimelineApi(TenantApiMixin, APIView):
    """Every event of one order in position order, with each handler's delivery still on record."""

    permission_classes = [IsTenantStaff]
    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    @extend_schema_serializer(component_name="OrderTimelineEvent")
    class OutputSerializer(serializers.Serializer):
        @extend_schema_serializer(component_name="OrderTimelineDelivery")
        class DeliverySerializer(serializers.Serializer):
            handler = serializers.CharField()
            status = serializers.CharField()
            attempts = serializers.IntegerField()
            last_error = serializers.CharField(allow_blank=True)
            next_attempt_at = serializers.DateTimeField()

        position = serializers.IntegerField()
        id = serializers.UUIDField(source="event_id")
        type = serializers.CharField()
        occurred_at = serializers.DateTimeField()
        correlation_id = serializers.CharField()
        causation_id = serializers.UUIDField()
        actor = serializers.CharField()
        deliveries = DeliverySerializer(many=True)

    @extend_schema(operation_id="orders_events_list", responses=OutputSerializer(many=True))
    @reads_from_replica()
    def get(self, request: Request, order_id: UUID) -> Response:
        events = order_timeline_for(tenant_id=self.tenant.id, order_id=order_id)
        if not events:
            raise NotFound("Not found.")
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(events, request, view=self)
        return paginator.get_paginated_response(self.OutputSerializer(page, many=True).data)
