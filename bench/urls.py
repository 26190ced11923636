"""The project's URLs plus the plain-DRF and plain-saga reference endpoints the order benchmark compares against."""

from django.urls import path

from bench.plain import PlainOrderPlaceApi
from bench.plainsaga.api import SagaOrderPlaceApi
from config.urls import handler400, handler404, handler500  # noqa: F401
from config.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    *project_urlpatterns,
    path("bench/plain-orders/", PlainOrderPlaceApi.as_view()),
    path("bench/saga-orders/", SagaOrderPlaceApi.as_view()),
]
