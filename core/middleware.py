"""Requests that no view can serve are answered here, as JSON 400s, before any view runs."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve

from core.exception_handler import json_not_found


class ApiNotFoundMiddleware:
    """A path under `API_PATH_PREFIX` that no route takes is a JSON 404 at once: with DEBUG on too
    (no HTML page), before APPEND_SLASH would redirect (dropping a POST's body) and before a CSRF
    check could answer with its HTML page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(settings.API_PATH_PREFIX):
            try:
                resolve(request.path_info)
            except Resolver404:
                return json_not_found(request)
        return self.get_response(request)


class RefuseOversizedRequestsMiddleware:
    """A request line or a header past gunicorn's limits (`REQUEST_MAX_LINE`, `REQUEST_MAX_HEADER_BYTES`,
    `REQUEST_MAX_HEADERS`) is a JSON 400 here, whichever server passed it on. gunicorn itself
    refuses such requests before Django sees them, with its own plain 400; under another server
    (runserver, a larger gunicorn limit) the answer is still a 400, and JSON."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        problem = _oversized(request)
        if problem:
            return JsonResponse({"detail": problem, "code": "too_large"}, status=400)
        return self.get_response(request)


def _oversized(request: HttpRequest) -> str | None:
    target = len(request.META.get("PATH_INFO", "")) + len(request.META.get("QUERY_STRING", ""))
    if target > settings.REQUEST_MAX_LINE:
        return f"The URL is longer than {settings.REQUEST_MAX_LINE} characters."
    headers = [(key, value) for key, value in request.META.items() if key.startswith("HTTP_")]
    if len(headers) > settings.REQUEST_MAX_HEADERS:
        return f"More than {settings.REQUEST_MAX_HEADERS} header fields."
    for key, value in headers:
        if len(key) - 5 + len(str(value)) > settings.REQUEST_MAX_HEADER_BYTES:
            name = key[5:].replace("_", "-").title()
            return f"The {name} header is longer than {settings.REQUEST_MAX_HEADER_BYTES} bytes."
    return None


class RefuseNulCharactersMiddleware:
    """A NUL character in the path or the query string (`products/%00/`, `?status=%00`) reaches
    PostgreSQL, which cannot hold it in text, as a 500: refuse it as a bad request instead."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path or any(
            "\x00" in key or any("\x00" in v for v in values) for key, values in request.GET.lists()
        ):
            return JsonResponse(
                {"detail": "NUL characters are not allowed in the path or the query string.", "code": "invalid"},
                status=400,
            )
        return self.get_response(request)
