from django.urls import path

from inventory.api import ProductDetailUpdateApi, ProductListCreateApi, ProductRestockApi

urlpatterns = [
    path("products/", ProductListCreateApi.as_view(), name="product-list"),
    path("products/<str:sku>/", ProductDetailUpdateApi.as_view(), name="product-detail"),
    path("products/<str:sku>/restock", ProductRestockApi.as_view(), name="product-restock"),
]
