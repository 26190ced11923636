"""The orders HTTP API (docs/api.md): place, list, read, cancel and fulfill orders.

Each operation is one view that validates its input, calls one service or selector and
serializes the order. A customer sees only their own orders, staff the whole tenant's; any other
order is a 404.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from core.errors import NotFound, ServiceBusy
from core.idempotency import IDEMPOTENCY_KEY_PARAMETER, idempotent
from core.pagination import MAX_PAGE, PAGE_PARAMETER
from core.schema import links_to
from core.serializers import StrictInputSerializer, StrictQuerySerializer, refuse_any_input
from domain_events.admission import Backlogged, admit
from orders.models import TRACKING_NUMBER_MAX_LENGTH, Order
from orders.selectors import order_get_for, order_list_for
from orders.services import OrderPlaceSerializer, order_cancel, order_fulfill, order_place_from
from tenants.permissions import IsTenantStaff
from tenants.scoping import TenantApiMixin

if TYPE_CHECKING:
    from tenants.models import User

# --- fields and the order representation ------------------------------------------------------


@extend_schema_serializer(component_name="OrderItem")
class OrderItemOutputSerializer(serializers.Serializer):
    sku = serializers.CharField()
    title = serializers.CharField()
    quantity = serializers.IntegerField()
    unit_price = serializers.DecimalField(max_digits=12, decimal_places=2)


@extend_schema_serializer(component_name="Order")
class OrderOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=Order.Status.choices)
    cancellation_reason = serializers.ChoiceField(choices=Order.CancellationReason.choices, allow_blank=True)
    items = OrderItemOutputSerializer(many=True)
    total_amount = serializers.DecimalField(max_digits=12, decimal_places=2)
    currency = serializers.CharField()
    tracking_number = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


def _order_or_404(user: User, order_id: UUID) -> Order:
    order = order_get_for(user=user, order_id=order_id)
    if order is None:
        raise NotFound("Not found.")
    return order


# --- operations --------------------------------------------------------------------------------


class OrderListApi(TenantApiMixin, APIView):
    """The orders the caller may see, newest first, paginated."""

    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS
    OutputSerializer = OrderOutputSerializer

    class FilterSerializer(StrictQuerySerializer):
        status = serializers.ChoiceField(choices=Order.Status.choices, required=False)
        page = serializers.IntegerField(
            min_value=1, max_value=MAX_PAGE, required=False, help_text=PAGE_PARAMETER.description
        )

    @extend_schema(
        operation_id="orders_list",
        description="The orders the caller may see, newest first: a customer's own, or all the bookstore's for staff.",
        parameters=[FilterSerializer],
        responses=OrderOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        orders = order_list_for(user=request.user, status=filters.validated_data.get("status"))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(orders, request, view=self)
        return paginator.get_paginated_response(self.OutputSerializer(page, many=True).data)


class OrderPlaceApi(TenantApiMixin, APIView):
    """Place an order; prices come from the catalog. Safe to retry with an `Idempotency-Key`."""

    openapi_links = {
        "POST": {
            "201": links_to(
                "orders_retrieve",
                "orders_cancel",
                "orders_fulfill",
                "orders_events_list",
                order_id="$response.body#/id",
            )
        }
    }

    OutputSerializer = OrderOutputSerializer
    # Documents the body; `order_place_from` validates it (the one validation of an order).
    InputSerializer = OrderPlaceSerializer

    @extend_schema(
        operation_id="orders_place",
        description=(
            "Place an order: 1 to 100 lines of distinct skus, each quantity 1 to 10,000; prices come from the "
            "catalog. The order starts `placed`; stock, payment and confirmation follow asynchronously."
        ),
        request=InputSerializer,
        responses={
            201: OrderOutputSerializer,
            400: OpenApiResponse(
                description="Invalid input, with field messages: also a sku twice or not in the catalog, or a"
                " total too large; nothing was written."
            ),
            409: OpenApiResponse(description="A request with the same Idempotency-Key is still in progress."),
            422: OpenApiResponse(description="The Idempotency-Key was already used with another request body."),
            503: OpenApiResponse(
                description="With `OUTBOX_ADMISSION_MAX_BACKLOG` set, the order's handlers are that far behind:"
                " nothing was written; retry after `Retry-After` seconds (with the same Idempotency-Key)."
            ),
        },
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        try:
            admit()
        except Backlogged as busy:
            raise ServiceBusy(
                wait=busy.retry_after, detail="Too many orders are still being processed; try again shortly."
            ) from busy
        order = order_place_from(tenant=self.tenant, customer=request.user, data=request.data)
        return Response(self.OutputSerializer(order).data, status=status.HTTP_201_CREATED)


class OrderCollectionApi(OrderListApi, OrderPlaceApi):
    """`orders/`: GET is `OrderListApi`, POST is `OrderPlaceApi` (two operations, one URL)."""


class OrderDetailApi(TenantApiMixin, APIView):
    """One order the caller may see."""

    OutputSerializer = OrderOutputSerializer

    @extend_schema(operation_id="orders_retrieve", responses=OrderOutputSerializer)
    def get(self, request: Request, order_id: UUID) -> Response:
        order = _order_or_404(request.user, order_id)
        return Response(self.OutputSerializer(order).data)


class OrderCancelApi(TenantApiMixin, APIView):
    """Cancel an order at the customer's request (its owner or staff); 409 once it is fulfilled or delivered."""

    OutputSerializer = OrderOutputSerializer

    @extend_schema(
        operation_id="orders_cancel",
        request=None,
        responses={
            200: OrderOutputSerializer,
            409: OpenApiResponse(description="The order is fulfilled, delivered or cancelled."),
        },
    )
    def post(self, request: Request, order_id: UUID) -> Response:
        order = _order_or_404(request.user, order_id)
        refuse_any_input(request.data)
        order = order_cancel(order=order, reason=Order.CancellationReason.CUSTOMER_REQUEST, by=request.user)
        return Response(self.OutputSerializer(order).data)


class OrderFulfillApi(TenantApiMixin, APIView):
    """Ship a confirmed order with its tracking number (staff); 409 for any other order."""

    permission_classes = [IsTenantStaff]
    OutputSerializer = OrderOutputSerializer

    @extend_schema_serializer(component_name="OrderFulfill")
    class InputSerializer(StrictInputSerializer):
        tracking_number = serializers.CharField(max_length=TRACKING_NUMBER_MAX_LENGTH)

    @extend_schema(
        operation_id="orders_fulfill",
        request=InputSerializer,
        responses={200: OrderOutputSerializer, 409: OpenApiResponse(description="The order is not confirmed.")},
    )
    def post(self, request: Request, order_id: UUID) -> Response:
        order = _order_or_404(request.user, order_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        order = order_fulfill(order=order, **serializer.validated_data)
        return Response(self.OutputSerializer(order).data)
