from django.urls import path

from orders.api import OrderCancelApi, OrderCollectionApi, OrderDetailApi, OrderFulfillApi

urlpatterns = [
    path("orders/", OrderCollectionApi.as_view(), name="orders"),
    path("orders/<uuid:order_id>/", OrderDetailApi.as_view(), name="order-detail"),
    path("orders/<uuid:order_id>/cancel", OrderCancelApi.as_view(), name="order-cancel"),
    path("orders/<uuid:order_id>/fulfill", OrderFulfillApi.as_view(), name="order-fulfill"),
]
