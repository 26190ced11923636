"""What keeps the admin's lists of events and deliveries fast however big the tables grow.

Django's changelist counts every row it could show (for the paginator), and a field filter builds
its choices with SELECT DISTINCT over the whole table: at a million events and five million
deliveries each of those reads the table and takes seconds. Here the count comes from the table's
statistics when the list is unfiltered and stops at COUNT_CAP otherwise, the filters' choices
come from the code and from small tables, and searches only look where an index is. The other
lists that grow with the events (audit entries, webhook deliveries, orders) use the same
paginator and event type filter.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from django.contrib import admin
from django.core.paginator import EmptyPage, PageNotAnInteger, Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property
from django.utils.safestring import SafeString

from domain_events.registry import registry

# Past this many rows a filtered list stops counting: "10,001" means "more than 10,000".
COUNT_CAP = 10_000


def estimated_rows(queryset: QuerySet) -> int:
    """The planner's row count for the queryset's table (-1 if never analysed, or not PostgreSQL)."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return -1
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [queryset.model._meta.db_table]
        )
        row = cursor.fetchone()
    return row[0] if row else -1


class LargeTablePaginator(Paginator):
    """Pages without counting the table: an estimate when unfiltered, a capped count otherwise.

    Any page number can be asked for: past the end a page is simply empty, so an estimate that
    runs short or long never hides rows or breaks a link.
    """

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not queryset.query.where:
            estimate = estimated_rows(queryset)
            if estimate > COUNT_CAP:
                return estimate
        return queryset.order_by()[: COUNT_CAP + 1].count()

    def validate_number(self, number: object) -> int:
        try:
            number = int(number)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise PageNotAnInteger("That page number is not an integer") from None
        if number < 1:
            raise EmptyPage("That page number is less than 1")
        return number

    def page(self, number: object):
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        return self._get_page(self.object_list[bottom : bottom + self.per_page], number, self)


class ChoicesFilter(admin.SimpleListFilter):
    """Filter one column by exact value, choices from `choices_for(request)`, not SELECT DISTINCT.

    The URL parameter is Django's own (`<field>__exact`), so links made before keep working.
    """

    field: str
    choices_for: Callable[[object], list[tuple[str, str]]]

    def lookups(self, request, model_admin) -> list[tuple[str, str]]:
        return type(self).choices_for(request)

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(**{self.field: self.value()})
        return queryset


def choices_filter(field: str, title: str, choices: Callable[[object], list[tuple[str, str]]]) -> type[ChoicesFilter]:
    return type(
        f"{field.title().replace('_', '')}Filter",
        (ChoicesFilter,),
        {"field": field, "parameter_name": f"{field}__exact", "title": title, "choices_for": staticmethod(choices)},
    )


def event_type_choices(request: object) -> list[tuple[str, str]]:
    """Every registered event type: an event type filter's choices, without reading the table."""
    return [(name, name) for name in sorted(registry.types())]


def as_uuid(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term.strip())
    except ValueError:
        return None


def aggregate_link(site: admin.AdminSite, event_type: str, aggregate_id: object) -> SafeString | str:
    """The aggregate's short id, linked to its admin page when a module registered one for the
    field that holds it in events of `event_type` (`order_id` → the order, `product_id` → the product)."""
    cls = registry.types().get(event_type)
    return site.aggregate_link(cls.aggregate_field if cls is not None else None, aggregate_id)
