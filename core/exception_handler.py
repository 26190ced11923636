"""The one place that turns every error into a JSON response: DRF's handler and Django's 400/404/500."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler

from core.errors import ApplicationError


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(as_serializer_error(exc))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, SuspiciousOperation):
        detail, code = bad_request_detail(exc)
        return Response({"detail": detail, "code": code}, status=400)
    if isinstance(exc, ApplicationError):
        return Response({"detail": exc.message, "code": exc.code, **exc.extra}, status=exc.status_code)
    response = exception_handler(exc, context)
    if response is not None:
        response.data = _one_shape(exc, response.data)
    return response


def _one_shape(exc: Exception, data: Any) -> dict[str, Any]:
    """Every API error as `{"detail": message, "code": code, **field messages}`.

    DRF answers a validation error with field messages only, and other errors with `detail` only;
    clients read one shape whatever went wrong.
    """
    if isinstance(exc, exceptions.ValidationError):
        fields = data if isinstance(data, dict) else {"non_field_errors": data}
        return {"detail": "Invalid input.", "code": "invalid", **fields}
    if isinstance(data, dict) and "detail" in data:
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
        code = codes if isinstance(codes, str) else "error"
        return {"code": code, **data}
    return {"detail": "Request failed.", "code": "error", "errors": data}


def json_not_found(request, exception=None) -> JsonResponse:
    return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)


def json_server_error(request) -> JsonResponse:
    return JsonResponse({"detail": "Internal server error.", "code": "error"}, status=500)


def json_bad_request(request, exception=None) -> JsonResponse:
    detail, code = bad_request_detail(exception)
    return JsonResponse({"detail": detail, "code": code}, status=400)


def bad_request_detail(exception: Exception | None) -> tuple[str, str]:
    """What a 400 that Django raised says: the limit a body or form passed, else only "Bad request."
    (other suspicious operations, such as a disallowed host, are not described to the client)."""
    if isinstance(exception, RequestDataTooBig):
        return str(exception) or "The body is too large.", "too_large"
    if isinstance(exception, TooManyFieldsSent):
        return str(exception) or "Too many fields.", "too_many_fields"
    return "Bad request.", "bad_request"
