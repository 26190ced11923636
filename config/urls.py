from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from config import health, metrics
from core.docs import SwaggerUiView

api_v1 = [
    path("", include("tenants.urls")),
    path("", include("inventory.urls")),
    path("", include("orders.urls")),
    path("", include("analytics.urls")),
    path("", include("webhooks.urls")),
    path("", include("integrations.urls")),
    path("", include("inbound.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SwaggerUiView.as_view(url_name="schema"), name="docs"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
]

admin.site.site_header = "ShelfWise"
admin.site.site_title = "ShelfWise admin"
admin.site.index_title = "Bookstore administration"

handler400 = "core.exception_handler.json_bad_request"
handler404 = "core.exception_handler.json_not_found"
handler500 = "core.exception_handler.json_server_error"
