from django.urls import path

from webhooks.api import (
    DeliveryListApi,
    DeliveryRedeliverApi,
    EndpointDetailApi,
    EndpointListCreateApi,
    EndpointRecoverApi,
    EndpointRotateSecretApi,
)

urlpatterns = [
    path("webhook-endpoints/", EndpointListCreateApi.as_view(), name="webhook-endpoint-list"),
    path("webhook-endpoints/<uuid:endpoint_id>/", EndpointDetailApi.as_view(), name="webhook-endpoint-detail"),
    path(
        "webhook-endpoints/<uuid:endpoint_id>/rotate-secret",
        EndpointRotateSecretApi.as_view(),
        name="webhook-endpoint-rotate-secret",
    ),
    path("webhook-endpoints/<uuid:endpoint_id>/recover", EndpointRecoverApi.as_view(), name="webhook-endpoint-recover"),
    path("webhook-endpoints/<uuid:endpoint_id>/deliveries/", DeliveryListApi.as_view(), name="webhook-delivery-list"),
    path(
        "webhook-endpoints/<uuid:endpoint_id>/deliveries/<uuid:delivery_id>/redeliver",
        DeliveryRedeliverApi.as_view(),
        name="webhook-delivery-redeliver",
    ),
]
