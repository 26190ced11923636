"""The plain-DRF reference: `POST` an order with the same inserts as `POST orders/`, nothing else.

No authentication, no catalog lookup, no events, no handlers: what Django and DRF alone cost for
this write. ShelfWise aims at 80 % of this figure with every handler subscribed.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from orders.models import Order, OrderItem


class PlainOrderPlaceApi(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    class InputSerializer(serializers.Serializer):
        class ItemSerializer(serializers.Serializer):
            sku = serializers.CharField(max_length=64)
            title = serializers.CharField(max_length=255)
            quantity = serializers.IntegerField(min_value=1, max_value=10_000)
            unit_price = serializers.DecimalField(max_digits=12, decimal_places=2)

        tenant_id = serializers.UUIDField()
        customer_id = serializers.UUIDField()
        currency = serializers.CharField(max_length=3)
        items = ItemSerializer(many=True, allow_empty=False, max_length=100)

    class OutputSerializer(serializers.Serializer):
        class ItemSerializer(serializers.Serializer):
            sku = serializers.CharField()
            title = serializers.CharField()
            quantity = serializers.IntegerField()
            unit_price = serializers.DecimalField(max_digits=12, decimal_places=2)

        id = serializers.UUIDField()
        status = serializers.CharField()
        items = ItemSerializer(many=True)
        total_amount = serializers.DecimalField(max_digits=12, decimal_places=2)
        currency = serializers.CharField()
        created_at = serializers.DateTimeField()

    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        order = Order(tenant_id=data["tenant_id"], customer_id=data["customer_id"], currency=data["currency"])
        items = [OrderItem(order=order, **item) for item in data["items"]]
        order.total_amount = sum((i.unit_price * i.quantity for i in items), Decimal("0.00"))
        with transaction.atomic():
            order.save(force_insert=True)
            OrderItem.objects.bulk_create(items)
        body = self.OutputSerializer(
            {
                **{f: getattr(order, f) for f in ("id", "status", "total_amount", "currency", "created_at")},
                "items": items,
            }
        ).data
        return Response(body, status=status.HTTP_201_CREATED)
