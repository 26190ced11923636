"""The OpenAPI document's error responses: every operation documents the errors it can answer,
in the one error shape of `core.exception_handler`."""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    """`detail` says what went wrong, `code` names it; a refused input adds one entry per field
    with its messages (a list of strings, or an object per line for lists of lines)."""

    detail = serializers.CharField()
    code = serializers.CharField()


_ERRORS = {
    "400": "Invalid input (field messages beside detail and code), malformed JSON or a bad parameter;"
    " nothing was written.",
    "401": "No credentials, or a token that is not valid.",
    "403": "Authenticated, but this operation is not for this kind of user.",
    "404": "No such resource for the caller's tenant (another tenant's ids are not found either).",
    "429": "Too many requests; retry after the seconds in `Retry-After`.",
}


class ShelfWiseAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code in sorted(set(self._error_codes()) | {c for c in responses if c.startswith("4")}):
            current = responses.get(code)
            if current is None or _generic(current):
                description = current["description"] if current else _ERRORS.get(code, "Error.")
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(response=ErrorSerializer, description=description), code, direction=direction
                )
        return responses

    def _error_codes(self) -> list[str]:
        codes = ["400"]
        if self.get_auth():
            codes += ["401", "403"]
        if "{" in self.path or self.method in ("PUT", "PATCH", "DELETE"):
            codes.append("404")
        if getattr(self.view, "throttle_classes", None):
            codes.append("429")
        return codes


def _generic(response: dict) -> bool:
    """No body described, or only "some object": the error shape is what it is."""
    content = response.get("content")
    if not content:
        return True
    schema = content.get("application/json", {}).get("schema", {})
    return schema.get("type") == "object" and not schema.get("properties") and "$ref" not in schema
