"""The API's documentation page."""

from drf_spectacular.views import SpectacularSwaggerSplitView


class SwaggerUiView(SpectacularSwaggerSplitView):
    """Swagger UI (served offline) that keeps to the Content-Security-Policy: its start-up script
    is a separate URL, its one inline style carries the nonce."""

    template_name = "core/swagger_ui.html"
