"""The OpenAPI document's error responses: every operation documents the errors it can answer,
in the one error shape of `core.exception_handler`."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import force_instance, get_override, is_list_serializer
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from core.pagination import PAGE_QUERY_PARAM
from core.serializers import VISIBLE_CHARACTER, StrictInputSerializer, decimal_pattern


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
    "404_page": "A page past the last one.",
    "406": "The `Accept` header asks for something other than JSON.",
    "415": "The body is not `application/json`.",
    "429": "Too many requests; retry after the seconds in `Retry-After`.",
}


def links_to(*operation_ids: str, request_body: Any = None, **parameters: str) -> dict[str, Any]:
    """OpenAPI links from a response to the operations that take what it returns, one per
    operation id: `parameters` map the target's parameters to runtime expressions
    (`$response.body#/id`). Views list them as `openapi_links = {METHOD: {status: links}}`; a
    client (and stateful testing) follows them from a created resource to reading and changing it."""
    link: dict[str, Any] = {"parameters": parameters}
    if request_body is not None:
        link["requestBody"] = request_body
    return {operation_id: {"operationId": operation_id, **link} for operation_id in operation_ids}


class ShelfWiseAutoSchema(AutoSchema):
    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        serializer = force_instance(serializer)
        if direction == "request" and isinstance(serializer, StrictInputSerializer):
            _as_enforced(serializer, schema)
        return schema

    def _get_request_body(self, direction="request"):
        body = super()._get_request_body(direction)
        if body is not None and getattr(force_instance(self.get_request_serializer()), "at_least_one_field", False):
            body["required"] = True
        return body

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code, links in getattr(self.view, "openapi_links", {}).get(self.method, {}).items():
            if code in responses:
                responses[code]["links"] = links
        for code in sorted(set(self._error_codes()) | {c for c in responses if c[:1] in ("4", "5")}):
            current = responses.get(code)
            if current is None or _generic(current):
                description = current["description"] if current else self._error_description(code)
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(response=ErrorSerializer, description=description), code, direction=direction
                )
        return responses

    def _error_codes(self) -> list[str]:
        codes = ["400", "406"]
        if self.get_auth():
            codes += ["401", "403"]
        if "{" in self.path or self.method in ("PUT", "PATCH", "DELETE") or self._paginated():
            codes.append("404")
        if self.method in ("POST", "PUT", "PATCH"):
            codes.append("415")
        if getattr(self.view, "throttle_classes", None):
            codes.append("429")
        return codes

    def _error_description(self, code: str) -> str:
        if code == "404" and "{" not in self.path and self._paginated():
            return _ERRORS["404_page"]
        return _ERRORS.get(code, "Error.")

    def _paginated(self) -> bool:
        if self.method != "GET":
            return False
        if getattr(self.view, "pagination_class", None):
            # The documented 200, not `_is_list_view()`, which guesses (and warns) for plain APIViews.
            responses = get_override(self.view, "responses", None) or self.get_response_serializers()
            if isinstance(responses, dict):
                responses = responses.get(200, responses.get("200"))
            if is_list_serializer(responses):
                return True
        return any(getattr(p, "name", None) == PAGE_QUERY_PARAM for p in self.get_override_parameters())


def _generic(response: dict) -> bool:
    """No body described, or only "some object": the error shape is what it is."""
    content = response.get("content")
    if not content:
        return True
    schema = content.get("application/json", {}).get("schema", {})
    return schema.get("type") == "object" and not schema.get("properties") and "$ref" not in schema


def _as_enforced(serializer: StrictInputSerializer, schema: dict[str, Any]) -> None:
    """Describe a strict input exactly as `core.serializers` enforces it: no other field, money in
    the one decimal form, strings with a visible character unless blank is allowed, list bounds."""
    schema["additionalProperties"] = False
    if serializer.at_least_one_field:
        schema["minProperties"] = 1
    for name, field in serializer.fields.items():
        prop = schema.get("properties", {}).get(name)
        if prop is None or "$ref" in prop:
            continue
        if isinstance(field, serializers.DecimalField):
            for keyword in ("type", "format", "pattern", "maximum", "minimum"):
                prop.pop(keyword, None)
            whole = {"type": "integer", "maximum": 10 ** (field.max_digits - field.decimal_places) - 1}
            if field.min_value is not None:
                whole["minimum"] = int(field.min_value)
            prop["oneOf"] = [{"type": "string", "format": "decimal", "pattern": decimal_pattern(field)}, whole]
        elif (
            isinstance(field, serializers.CharField)
            and not field.allow_blank
            and field.trim_whitespace
            and "pattern" not in prop
        ):
            prop["pattern"] = VISIBLE_CHARACTER
        elif isinstance(field, serializers.ListSerializer):
            if not field.allow_empty:
                prop["minItems"] = 1
            if field.max_length is not None:
                prop["maxItems"] = field.max_length
