"""The API's JSON parser: what the standard one does, plus refusals that keep hostile bodies a 400.

- Nesting deeper than `MAX_DEPTH` (no request of the API nests past a handful of levels): the
  standard parser recurses until Python's recursion limit and fails with a 500.
- NUL characters anywhere in the document (keys or strings): PostgreSQL text cannot hold them, so
  they would fail later, at a write, as a 500.
- A body past `DATA_UPLOAD_MAX_MEMORY_SIZE`: Django enforces it on `request.body`, which DRF's
  parsers never read, so a JSON body of any size was read whole.
- An object with more keys than `DATA_UPLOAD_MAX_NUMBER_FIELDS`, as Django refuses such a form.
"""

from __future__ import annotations

import io

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH = 32


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and stream is not None:
            body = stream.read(limit + 1)
            if len(body) > limit:
                raise RequestDataTooBig(f"The body is larger than {limit} bytes.")
            stream = io.BytesIO(body)
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON parse error - nested more than {MAX_DEPTH} levels deep.") from None
        _check(data)
        return data


def _check(data: object) -> None:
    """Walk the document without recursion: depth and NUL characters."""
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise ParseError("JSON parse error - NUL characters (\\u0000) are not allowed.")
        elif isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise ParseError(f"JSON parse error - nested more than {MAX_DEPTH} levels deep.")
            fields = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
            if isinstance(value, dict) and fields is not None and len(value) > fields:
                raise TooManyFieldsSent(f"An object has more than {fields} fields.")
            items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
            for key, item in items:
                if isinstance(key, str) and "\x00" in key:
                    raise ParseError("JSON parse error - NUL characters (\\u0000) are not allowed.")
                stack.append((item, depth + 1))
