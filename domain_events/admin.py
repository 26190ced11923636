"""Stored events, deliveries, subscribers and position readers, for staff: what happened, who
handled it, what is stuck, and what is behind."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import SafeString

from core.replica import replica_status
from domain_events import reader_lag, subscribers, tracking
from domain_events.admin_lists import (
    LargeTablePaginator,
    aggregate_link,
    as_uuid,
    choices_filter,
    event_type_choices,
)
from domain_events.conf import domain_events_settings
from domain_events.deadletters import redrive, skip
from domain_events.head import oldest_writer
from domain_events.models import (
    UNTIL_RELEASED,
    Checkpoint,
    Delivery,
    DeliveryStatus,
    ParkedEvent,
    StoredEvent,
    Subscriber,
)
from domain_events.subscriptions import subscriptions
from staff_admin.columns import TenantColumnForOperators, first_line, local_time, short_id, tenant_name
from staff_admin.site import panel
from tenants.models import Tenant
from tenants.scoping import ReadOnlyAdminMixin, TenantScopedAdmin


def handler_names() -> list[str]:
    """Every handler subscribed in this code or ever deployed (Subscriber rows: a small table)."""
    deployed = Subscriber.objects.values_list("name", flat=True)
    return sorted({s.name for s in subscriptions.all()} | set(deployed))


def handler_choices(request: HttpRequest) -> list[tuple[str, str]]:
    return [(name, name) for name in handler_names()]


def tenant_choices(request: HttpRequest) -> list[tuple[str, str]]:
    # Staff see their own tenant's rows only: nothing to choose.
    if not (request.user.is_superuser and request.user.tenant_id is None):
        return []
    return [(str(pk), name) for pk, name in Tenant.objects.order_by("name").values_list("pk", "name")]


TenantFilter = choices_filter("tenant_id", "tenant", tenant_choices)


class ReadOnlyAdmin(TenantColumnForOperators, ReadOnlyAdminMixin, TenantScopedAdmin):
    """Lists of tables that grow without bound: no full count, choices without SELECT DISTINCT, and
    sorting only by the columns an index keeps in order (see admin_lists)."""

    tenant_field = "tenant_id"
    paginator = LargeTablePaginator
    show_full_result_count = False

    @admin.display(description="tenant")
    def tenant(self, obj: StoredEvent | Delivery) -> str:
        return tenant_name(obj.tenant_id)

    @admin.display(description="concerns")
    def concerns(self, obj: StoredEvent | Delivery) -> SafeString | str:
        event_type = obj.type if isinstance(obj, StoredEvent) else obj.event_type
        return aggregate_link(self.admin_site, event_type, obj.aggregate_id)


class DeliveryInline(admin.TabularInline):
    model = Delivery
    fields = ["handler", "status", "attempts", "next_attempt_at", "last_error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(StoredEvent)
class StoredEventAdmin(ReadOnlyAdmin):
    list_display = ["position", "type", "version", "concerns", "occurred", "event", "correlation"]
    list_filter = [choices_filter("type", "type", event_type_choices), TenantFilter]
    search_fields = ["event_id", "aggregate_id"]
    search_help_text = "An event id or an aggregate id."
    # Newest first; events not numbered yet (a moment after their commit) come first. Each filter
    # has an index in this order: position, (tenant_id, position), (type, position).
    ordering = ["-position"]
    sortable_by = ["position"]
    fields = [
        "event_id",
        "type",
        "version",
        "position",
        "tenant_id",
        "aggregate_id",
        "concerns",
        "occurred_at",
        "recorded_at",
        "correlation_id",
        "causation_id",
        "payload_pretty",
    ]
    readonly_fields = fields
    inlines = [DeliveryInline]

    @admin.display(description="occurred", ordering="occurred_at")
    def occurred(self, obj: StoredEvent) -> SafeString | str:
        return local_time(obj.occurred_at)

    @admin.display(description="event")
    def event(self, obj: StoredEvent) -> SafeString | str:
        return short_id(obj.event_id)

    @admin.display(description="correlation")
    def correlation(self, obj: StoredEvent) -> SafeString | str:
        return short_id(obj.correlation_id)

    def get_search_results(self, request, queryset, search_term):
        """By event id or aggregate id, both indexed (Django's `=field` search compares them as text)."""
        if not search_term.strip():
            return queryset, False
        key = as_uuid(search_term)
        if key is None:
            return queryset.none(), False
        return queryset.filter(Q(event_id=key) | Q(aggregate_id=key)), False

    @admin.display(description="payload")
    def payload_pretty(self, obj: StoredEvent) -> str:
        return format_html("<pre class='sw-payload'>{}</pre>", obj.pretty_payload())


class HeldFilter(admin.SimpleListFilter):
    title = "held back"
    parameter_name = "held"

    def lookups(self, request, model_admin):
        return [("dead", "held by a dead letter"), ("waiting", "waiting for an earlier event")]

    def queryset(self, request, queryset):
        if self.value() == "dead":
            return queryset.filter(held_by__isnull=False, next_attempt_at=UNTIL_RELEASED)
        if self.value() == "waiting":
            return queryset.filter(held_by__isnull=False).exclude(next_attempt_at=UNTIL_RELEASED)
        return queryset


class SkipForm(forms.Form):
    reason = forms.CharField(
        max_length=500, widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), help_text="Kept on each delivery."
    )


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    # Handler and event type share a column, status and hold another: the list fits 1366 px
    # beside its filters.
    list_display = ["id", "handler_and_event", "concerns", "state", "attempts", "next_attempt", "short_error"]
    list_filter = [
        "status",
        HeldFilter,
        choices_filter("handler", "handler", handler_choices),
        choices_filter("event_type", "event type", event_type_choices),
        TenantFilter,
    ]
    search_fields = ["stored_event__event_id", "aggregate_id", "handler"]
    search_help_text = "An event id, an aggregate id, or part of a handler's name."
    # No join to the events: the list shows only the delivery's own columns, and over monthly
    # partitions a join on the event's id alone reaches every month for each row of the offset.
    list_select_related = False
    # Each filter has an index in this order: id, (handler, id), (event_type, id), (tenant_id, id),
    # and (status, id) for the failed, dead and skipped ones; pending rows are the claimable index's.
    ordering = ["-id"]
    sortable_by = ["id"]
    actions = ["redrive_selected", "skip_selected"]
    fields = [
        "stored_event",
        "event_type",
        "handler",
        "tenant_id",
        "aggregate_id",
        "status",
        "attempts",
        "next_attempt_at",
        "held",
        "last_error",
        "resolution",
        "sent_at",
        "started_at",
        "created_at",
        "updated_at",
        "completed_at",
        "payload_pretty",
    ]
    readonly_fields = fields

    def get_search_results(self, request, queryset, search_term):
        """Through the indexed paths only: a UUID finds its event's (or aggregate's events')
        deliveries by the events' indexes; other text picks the handlers whose name contains it."""
        if not search_term.strip():
            return queryset, False
        key = as_uuid(search_term)
        if key is not None:
            events = StoredEvent.objects.filter(Q(event_id=key) | Q(aggregate_id=key)).values("id")
            return queryset.filter(stored_event_id__in=events), False
        term = search_term.strip().lower()
        return queryset.filter(handler__in=[name for name in handler_names() if term in name.lower()]), False

    @admin.display(description="handler · event")
    def handler_and_event(self, obj: Delivery) -> SafeString:
        return format_html("{}<br><small>{}</small>", obj.handler, obj.event_type)

    @admin.display(description="status")
    def state(self, obj: Delivery) -> SafeString | str:
        held = self.held(obj)
        return format_html("{}<br><small>{}</small>", obj.status, held) if held else obj.status

    @admin.display(description="last error")
    def short_error(self, obj: Delivery) -> SafeString | str:
        return first_line(obj.last_error, limit=100)

    @admin.display(description="next attempt")
    def next_attempt(self, obj: Delivery) -> SafeString | str:
        if obj.status not in Delivery.OPEN or obj.next_attempt_at == UNTIL_RELEASED:
            return ""
        return local_time(obj.next_attempt_at)

    def get_urls(self):
        return [
            path(
                "<int:pk>/redrive/",
                self.admin_site.admin_view(self.redrive_one),
                name="domain_events_delivery_redrive",
            ),
            *super().get_urls(),
        ]

    def redrive_one(self, request: HttpRequest, pk: int) -> HttpResponseRedirect:
        """Redrive one dead delivery (the button beside it on an aggregate's timeline), then go back."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        delivery = get_object_or_404(self.get_queryset(request), pk=pk)
        if not self.has_view_permission(request, delivery):
            return HttpResponseRedirect(reverse("admin:index"))
        if redrive(self.get_queryset(request).filter(pk=pk)):
            self.message_user(
                request,
                f"Re-queued the dead delivery of {delivery.event_type} to {delivery.handler}.",
                messages.SUCCESS,
            )
        else:
            self.message_user(
                request, f"That delivery is {delivery.status}, not dead: nothing to redrive.", messages.WARNING
            )
        back = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
            back = reverse("admin:domain_events_delivery_change", args=[pk])
        return HttpResponseRedirect(back)

    @admin.display(description="held")
    def held(self, obj: Delivery) -> str:
        if obj.held_by is None:
            return ""
        if obj.next_attempt_at == UNTIL_RELEASED:
            return f"held by a dead letter (#{obj.held_by})"
        return f"waiting for #{obj.held_by}"

    @admin.display(description="event payload")
    def payload_pretty(self, obj: Delivery) -> str:
        return format_html("<pre class='sw-payload'>{}</pre>", obj.stored_event.pretty_payload())

    @admin.action(description="Redrive selected dead deliveries")
    def redrive_selected(self, request, queryset) -> None:
        selected = queryset.count()
        count = redrive(queryset)
        self.message_user(request, f"Re-queued {count} dead deliveries.", messages.SUCCESS)
        if selected - count:
            self.message_user(
                request, f"{selected - count} selected deliveries were not dead and were left alone.", messages.INFO
            )

    @admin.action(description="Skip selected dead deliveries (with a reason)")
    def skip_selected(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> TemplateResponse | None:
        """Ask why, then mark the dead deliveries skipped and release what they held back."""
        dead = list(queryset.filter(status=DeliveryStatus.DEAD))
        if not dead:
            self.message_user(request, "None of the selected deliveries is dead; nothing to skip.", messages.WARNING)
            return None
        form = SkipForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            context = {
                **self.admin_site.each_context(request),
                "title": "Skip dead deliveries",
                "opts": self.model._meta,
                "form": form,
                "selected": dead,
                "action": "skip_selected",
                "submit": "Skip",
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(request, "admin/domain_events/delivery/skip.html", context)
        count = skip(queryset, reason=form.cleaned_data["reason"], by=request.user.get_username())
        self.message_user(request, f"Skipped {count} dead deliveries; what they held back goes on.", messages.SUCCESS)
        return None


@admin.site.dashboard_panel(order=40)
def handler_trouble(request: HttpRequest, tenant: Tenant) -> SafeString:
    """Counts of the bookstore's handler deliveries that need a look, each linking to its list."""
    counts = Delivery.objects.filter(
        Q(status__in=[DeliveryStatus.FAILED, DeliveryStatus.DEAD]) | Q(held_by__isnull=False), tenant_id=tenant.id
    ).aggregate(
        failed=Count("pk", filter=Q(status=DeliveryStatus.FAILED)),
        dead=Count("pk", filter=Q(status=DeliveryStatus.DEAD)),
        held=Count("pk", filter=Q(held_by__isnull=False, next_attempt_at=UNTIL_RELEASED)),
    )
    deliveries = reverse("admin:domain_events_delivery_changelist")
    writer, age = oldest_writer()
    held_for = domain_events_settings()["READER_HELD_WARNING"].total_seconds()
    oldest = f"{age:.0f} s" if writer is not None else "none"
    if writer is not None and request.user.is_superuser:
        oldest += f" (pid {writer.pid}, {writer.application_name or 'no application name'})"
    return panel(
        panel_id="handler-trouble",
        title="Event handlers",
        facts=[
            (
                format_html('<a href="{}?status__exact=failed">Deliveries retrying</a>', deliveries),
                counts["failed"],
                counts["failed"] > 0,
            ),
            (
                format_html('<a href="{}?status__exact=dead" id="dead-letters">Dead letters</a>', deliveries),
                counts["dead"],
                counts["dead"] > 0,
            ),
            (
                format_html('<a href="{}?held=dead">Held back by a dead letter</a>', deliveries),
                counts["held"],
                counts["held"] > 0,
            ),
            # It holds every position reader (dashboard, audit trail) back while it is open.
            ("Oldest open writing transaction", oldest, age >= held_for),
            *_replica_facts(),
        ],
    )


def _replica_facts() -> list[tuple[str, object, bool]]:
    """How far behind the read replica is, and whether the read side reads from it now."""
    status = replica_status()
    if status is None:
        return []
    if not status.reachable:
        shown = "down: reads go to the primary"
    elif not status.usable:
        shown = f"{status.lag:.1f} s behind: reads go to the primary"
    else:
        shown = f"{status.lag:.1f} s behind"
    return [("Read replica", format_html('<span id="replica-lag">{}</span>', shown), not status.usable)]


class SuperuserOnlyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Backbone state that spans every tenant: superusers only."""

    def has_module_permission(self, request) -> bool:
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser


@admin.register(Subscriber)
class SubscriberAdmin(SuperuserOnlyAdmin):
    list_display = ["name", "mode", "deployed_here", "first_position", "covered_position", "last_seen_at"]
    ordering = ["name"]

    @admin.display(boolean=True, description="subscribed in this code")
    def deployed_here(self, obj: Subscriber) -> bool:
        return subscriptions.get(obj.name) is not None

    def changelist_view(self, request, extra_context=None):
        for orphan in subscribers.orphans():
            self.message_user(
                request,
                f"Handler {orphan.name!r} is no longer subscribed: {orphan.open_deliveries} open deliveries are "
                "kept out of claims and pruned after the orphan retention.",
                messages.WARNING,
            )
        return super().changelist_view(request, extra_context)


@admin.register(Checkpoint)
class CheckpointAdmin(SuperuserOnlyAdmin):
    list_display = ["name", "position", "behind", "attempts", "retry_at", "short_error", "updated_at"]
    ordering = ["name"]

    @admin.display(description="behind the head")
    def behind(self, obj: Checkpoint) -> str:
        name, _, target = obj.name.partition("@")
        if subscriptions.tracker(name) is None:
            return "not subscribed"
        lag = reader_lag.lag(name, target=target or tracking.LIVE)
        return f"{lag.positions} positions, {lag.seconds:.1f} s"

    @admin.display(description="last error")
    def short_error(self, obj: Checkpoint) -> str:
        return obj.last_error[:80]


@admin.register(ParkedEvent)
class ParkedEventAdmin(SuperuserOnlyAdmin):
    """Stored events a position reader could not read and went on past."""

    list_display = ["reader", "position", "stored_event_id", "short_error", "parked_at"]
    list_filter = ["reader"]
    ordering = ["-position"]

    @admin.display(description="error")
    def short_error(self, obj: ParkedEvent) -> SafeString | str:
        return first_line(obj.error, limit=80)
