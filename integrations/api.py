"""The published event contracts over HTTP, for anyone, beside the OpenAPI document: the AsyncAPI
document of the integration exchange and the JSON Schema of each version of each event's data."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import NotFound
from domain_events.schemas import UnknownContract, data_schema
from integrations.asyncapi import asyncapi_document

SCHEMA_CONTENT_TYPE = "application/schema+json"


class AsyncApiDocumentApi(APIView):
    """The AsyncAPI 3 document of the events published to the integration broker."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(operation_id="asyncapi_retrieve", responses={200: OpenApiTypes.OBJECT}, tags=["event contracts"])
    def get(self, request: Request) -> Response:
        return Response(asyncapi_document())


class EventSchemaApi(APIView):
    """The JSON Schema (2020-12) of a CloudEvent's `data` for one event type and version."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="event_schema_retrieve",
        responses={200: OpenApiTypes.OBJECT, 404: OpenApiResponse(description="No such type or version.")},
        tags=["event contracts"],
    )
    def get(self, request: Request, type_name: str, version: int) -> Response:
        try:
            schema = data_schema(type_name, version)
        except UnknownContract as exc:
            raise NotFound(str(exc)) from exc
        return Response(schema, content_type=SCHEMA_CONTENT_TYPE)
