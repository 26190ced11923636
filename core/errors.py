"""Domain errors: services raise them, `core.exception_handler` turns them into JSON responses."""

from __future__ import annotations

from typing import Any

from rest_framework import status


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
