"""The API's page numbers: `?page=` is a whole number from 1, and anything else is a 400.

One rule for the query of every list: a parameter the operation does not document is a 400 that
names it (`{"name": ["Unknown field."]}`), never silently ignored, so that a misspelt filter is
not taken for no filter. A list documents `page` and the fields of its `FilterSerializer`.

DRF's paginator answers `?page=0`, `?page=abc` and a page past the last with 404 (and takes
`?page=last`); here a malformed number is bad input, and only a page past the last, a page that
does not exist, is a 404. Both are documented on every paginated operation (`core.schema`).
"""

from __future__ import annotations

import re

from drf_spectacular.utils import OpenApiParameter
from rest_framework import pagination
from rest_framework.exceptions import ValidationError

PAGE_QUERY_PARAM = "page"
MAX_PAGE = 999_999_999
PAGE_PATTERN = re.compile(r"[1-9][0-9]{0,8}")

# The `page` parameter as every paginated operation documents it.
PAGE_PARAMETER = OpenApiParameter(
    PAGE_QUERY_PARAM,
    {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
    description="Page number, from 1; a page past the last is a 404.",
)


class PageNumberPagination(pagination.PageNumberPagination):
    def paginate_queryset(self, queryset, request, view=None):
        refuse_unknown_query_parameters(request, known={self.page_query_param, *_filters_of(view)})
        return super().paginate_queryset(queryset, request, view=view)

    def get_page_number(self, request, paginator):
        values = request.query_params.getlist(self.page_query_param)
        if not values:
            return 1
        if len(values) > 1 or not PAGE_PATTERN.fullmatch(values[0]):
            raise ValidationError({self.page_query_param: ["A page number from 1 is required."]})
        return int(values[0])

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": PAGE_QUERY_PARAM,
                "required": False,
                "in": "query",
                "description": PAGE_PARAMETER.description,
                "schema": PAGE_PARAMETER.type,
            }
        ]


def refuse_unknown_query_parameters(request, *, known: set[str]) -> None:
    """Raise a 400 naming every query parameter not in `known`."""
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise ValidationError({name: ["Unknown field."] for name in unknown})


def _filters_of(view) -> list[str]:
    filters = getattr(view, "FilterSerializer", None)
    return list(filters().fields) if filters is not None else []
