from django.urls import path

from inbound.api import DistributorNoticeApi, DistributorSecretApi

urlpatterns = [
    path("inbound/distributor/secret", DistributorSecretApi.as_view(), name="inbound-distributor-secret"),
    path("inbound/<slug:tenant_slug>/distributor/", DistributorNoticeApi.as_view(), name="inbound-distributor-notice"),
]
