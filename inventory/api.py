"""The catalog over HTTP (docs/api.md): list and read for every user of a tenant, writes for staff.

Each HTTP method is one operation: it validates its input, calls one service and serializes the
product. `products/` and `products/{sku}/` carry two operations each (read and write), so their
classes pick the permission by method. Another tenant's sku is simply not found.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from core.errors import NotFound
from core.pagination import PAGE_PARAMETER
from core.schema import links_to
from core.serializers import StrictInputSerializer
from inventory.models import SKU_PATTERN, Product
from inventory.selectors import product_get, product_list
from inventory.services import MAX_STOCK_CHANGE, product_create, product_restock, product_update
from tenants.permissions import IsTenantMember, IsTenantStaff
from tenants.scoping import TenantApiMixin


class ProductOutputSerializer(serializers.Serializer):
    """A product as every catalog endpoint returns it."""

    sku = serializers.CharField()
    title = serializers.CharField()
    price = serializers.DecimalField(max_digits=12, decimal_places=2)
    currency = serializers.CharField(source="tenant.currency")
    available = serializers.IntegerField()


class ProductPageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = ProductOutputSerializer(many=True)


def _price_field(**kwargs: Any) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0, **kwargs)


class CatalogApi(TenantApiMixin, APIView):
    """Shared by the catalog endpoints: reads for any tenant member, writes for the tenant's staff."""

    def get_permissions(self) -> list[BasePermission]:
        if self.request.method in SAFE_METHODS:
            return [IsTenantMember()]
        return [IsTenantStaff()]

    def products(self) -> QuerySet[Product]:
        return self.scoped(product_list())

    def product(self, sku: str) -> Product:
        product = product_get(products=self.products(), sku=sku)
        if product is None:
            raise NotFound(f"No product with SKU {sku!r}.")
        return product


class ProductListCreateApi(CatalogApi):
    """`GET products/` lists the catalog; `POST products/` (staff) adds a product."""

    openapi_links = {
        "POST": {
            "201": {
                **links_to(
                    "products_retrieve", "products_partial_update", "products_restock", sku="$response.body#/sku"
                ),
                **links_to("orders_place", request_body={"items": [{"sku": "$response.body#/sku", "quantity": 1}]}),
            }
        }
    }

    class CreateInputSerializer(StrictInputSerializer):
        sku = serializers.RegexField(SKU_PATTERN, max_length=64)
        title = serializers.CharField(max_length=200)
        price = _price_field()
        stock = serializers.IntegerField(min_value=0, max_value=MAX_STOCK_CHANGE, default=0)

    @extend_schema(
        operation_id="products_list",
        parameters=[PAGE_PARAMETER],
        responses={200: ProductPageSerializer},
    )
    def get(self, request: Request) -> Response:
        paginator = api_settings.DEFAULT_PAGINATION_CLASS()
        page = paginator.paginate_queryset(self.products(), request, view=self)
        return paginator.get_paginated_response(ProductOutputSerializer(page, many=True).data)

    @extend_schema(
        operation_id="products_create",
        request=CreateInputSerializer,
        responses={
            201: ProductOutputSerializer,
            409: OpenApiResponse(description="The bookstore already has a product with this sku."),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = self.CreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        product = product_create(tenant=self.tenant, **serializer.validated_data)
        return Response(ProductOutputSerializer(product).data, status=status.HTTP_201_CREATED)


class ProductDetailUpdateApi(CatalogApi):
    """`GET products/{sku}/` reads one product; `PATCH products/{sku}/` (staff) changes title or price."""

    class UpdateInputSerializer(StrictInputSerializer):
        at_least_one_field = True

        title = serializers.CharField(max_length=200, required=False)
        price = _price_field(required=False)

    @extend_schema(operation_id="products_retrieve", responses={200: ProductOutputSerializer})
    def get(self, request: Request, sku: str) -> Response:
        return Response(ProductOutputSerializer(self.product(sku)).data)

    @extend_schema(
        operation_id="products_partial_update", request=UpdateInputSerializer, responses={200: ProductOutputSerializer}
    )
    def patch(self, request: Request, sku: str) -> Response:
        product = self.product(sku)
        serializer = self.UpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        product = product_update(product=product, **serializer.validated_data)
        return Response(ProductOutputSerializer(product).data)


class ProductRestockApi(CatalogApi):
    """`POST products/{sku}/restock` (staff): more units on hand."""

    class InputSerializer(StrictInputSerializer):
        quantity = serializers.IntegerField(min_value=1, max_value=MAX_STOCK_CHANGE)

    @extend_schema(
        operation_id="products_restock",
        request=InputSerializer,
        responses={
            200: ProductOutputSerializer,
            400: OpenApiResponse(
                description="A quantity out of range, or one that would take the stock on hand past its maximum."
            ),
        },
    )
    def post(self, request: Request, sku: str) -> Response:
        product = self.product(sku)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        product = product_restock(product=product, quantity=serializer.validated_data["quantity"])
        return Response(ProductOutputSerializer(product).data)
