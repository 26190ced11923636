"""`POST bench/saga-orders/`: the plain saga's order endpoint, as a Django team writes it without an
event platform (the rest of the saga is bench/plainsaga/tasks.py).

The same authentication (the customer's token), the same validation (the order serializer of
`POST orders/`, distinct skus, prices from the catalog) and the same inserts (the order and its
lines); then `transaction.on_commit(lambda: task.delay(...))` hands the saga to Celery.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from bench.plainsaga.tasks import place_saga
from inventory.models import Product
from orders.models import Order, OrderItem

CENT = Decimal("0.01")


class OrderInputSerializer(serializers.Serializer):
    class ItemSerializer(serializers.Serializer):
        sku = serializers.CharField(max_length=64)
        quantity = serializers.IntegerField(min_value=1, max_value=10_000)

    items = ItemSerializer(many=True, allow_empty=False, max_length=100)
    payment_token = serializers.CharField(max_length=255)

    def validate_items(self, items: list[dict]) -> list[dict]:
        skus = [item["sku"] for item in items]
        if len(set(skus)) != len(skus):
            raise serializers.ValidationError("List each sku once.")
        return items


class OrderOutputSerializer(serializers.Serializer):
    class ItemSerializer(serializers.Serializer):
        sku = serializers.CharField()
        title = serializers.CharField()
        quantity = serializers.IntegerField()
        unit_price = serializers.DecimalField(max_digits=12, decimal_places=2)

    id = serializers.UUIDField()
    status = serializers.CharField()
    cancellation_reason = serializers.CharField(allow_blank=True)
    items = ItemSerializer(many=True)
    total_amount = serializers.DecimalField(max_digits=12, decimal_places=2)
    currency = serializers.CharField()
    tracking_number = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class SagaOrderPlaceApi(APIView):
    """The project's default authentication and permission (a tenant member's token)."""

    def post(self, request):
        serializer = OrderInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        tenant = request.user.tenant
        skus = [item["sku"] for item in data["items"]]
        products = {
            p.sku: p for p in Product.objects.filter(tenant_id=tenant.id, sku__in=skus).only("sku", "title", "price")
        }
        unknown = [sku for sku in skus if sku not in products]
        if unknown:
            raise serializers.ValidationError({"items": [f"No product with sku {sku!r}." for sku in unknown]})
        order = Order(tenant_id=tenant.id, customer_id=request.user.pk, currency=tenant.currency)
        items = [
            OrderItem(
                order=order,
                sku=item["sku"],
                title=products[item["sku"]].title,
                quantity=item["quantity"],
                unit_price=products[item["sku"]].price.quantize(CENT),
            )
            for item in data["items"]
        ]
        order.total_amount = sum((i.unit_price * i.quantity for i in items), Decimal("0.00"))
        payment_token = data["payment_token"]
        with transaction.atomic():
            order.save(force_insert=True)
            OrderItem.objects.bulk_create(items)
            transaction.on_commit(lambda: place_saga.delay(str(order.id), payment_token))
        body = OrderOutputSerializer(
            {
                **{
                    f: getattr(order, f)
                    for f in (
                        "id",
                        "status",
                        "cancellation_reason",
                        "total_amount",
                        "currency",
                        "tracking_number",
                        "created_at",
                        "updated_at",
                    )
                },
                "items": items,
            }
        ).data
        return Response(body, status=status.HTTP_201_CREATED)
