"""The API's JSON parser: what the standard one does, plus refusals that keep hostile bodies a 400.

- Nesting deeper than `MAX_DEPTH` (no request of the API nests past a handful of levels): the
  standard parser recurses until Python's recursion limit and fails with a 500.
- NUL characters anywhere in the document (keys or strings): PostgreSQL text cannot hold them, so
  they would fail later, at a write, as a 500.
"""

from __future__ import annotations

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH = 32


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
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
            items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
            for key, item in items:
                if isinstance(key, str) and "\x00" in key:
                    raise ParseError("JSON parse error - NUL characters (\\u0000) are not allowed.")
                stack.append((item, depth + 1))
