from django.urls import path

from integrations.api import AsyncApiDocumentApi, EventSchemaApi

urlpatterns = [
    path("asyncapi.json", AsyncApiDocumentApi.as_view(), name="asyncapi"),
    path("events/schemas/<str:type_name>/<int:version>.json", EventSchemaApi.as_view(), name="event-schema"),
]
