"""Domain errors: services raise them, `core.exception_handler` turns them into JSON responses."""

from __future__ import annotations

from typing import Any

from rest_framework import status
from rest_framework.exceptions import APIException


class ApplicationError(Exception):
    """A business rule said no. Services raise it; the API answers with `status_code`."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"

    def __init__(self, message: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


class Conflict(ApplicationError):
    """The request conflicts with the current state (an illegal transition, a taken name)."""

    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class NotFound(ApplicationError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


class Unprocessable(ApplicationError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    code = "unprocessable"


class ServiceBusy(APIException):
    """The service is too far behind to take more work now: 503 with `Retry-After` (seconds)."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Too busy to take this now; try again later."
    default_code = "busy"

    def __init__(self, *, wait: int, detail: str | None = None) -> None:
        super().__init__(detail)
        self.wait = wait
