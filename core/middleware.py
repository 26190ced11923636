"""Requests that no view can serve are answered here, as JSON 400s, before any view runs."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse


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
