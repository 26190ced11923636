"""Tenant isolation (guarantee 8, docs/architecture.md): a matrix generated from the URL conf and the admin registry.

Two bookstores get a whole history through the API (`e2e.isolation_world`). Then bookstore A's
customers and staff try every API route and every page of the staff admin with bookstore B's ids,
skus, e-mail addresses and filters: another bookstore's row is never in a list, a search, a count
or a figure, and its URL answers exactly as an id that exists nowhere. A route or an admin page
added later is in the matrix by construction; one the matrix cannot try (a new kind of path
parameter, an action body, a model the world has no row of) fails `test_the_matrix_covers_...`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient
from standardwebhooks.webhooks import WebhookVerificationError

from domain_events.models import StoredEvent
from e2e.isolation_world import SHARED_SKU, Bookstore, World, api_client_for, build_world
from inventory.models import Product
from orders.models import Order
from tenants.scoping import TenantScopedAdmin
from webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookSecret

pytestmark = pytest.mark.django_db

API = "api/v1/"


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, redis_broker, smtp_server_for_module) -> Iterator[World]:
    """Built once for the module, committed; the tests read it (each in a transaction rolled back)."""
    redis_broker.flushdb()
    with django_db_blocker.unblock():
        built = build_world(smtp_server_for_module)
    yield built
    with django_db_blocker.unblock():
        call_command("flush", interactive=False, verbosity=0)
    redis_broker.flushdb()


# --- what B owns, as text that must never reach A ---------------------------------------------


@dataclass(frozen=True)
class Markers:
    """What another bookstore's pages could leak: texts found anywhere, and short ids (the first 8
    characters of an id, as lists show them) found only standing alone, so that a short id never
    matches the middle of some other id by chance."""

    texts: frozenset[str]
    short_ids: frozenset[str]


def markers_of(store: Bookstore) -> Markers:
    """Every id, sku, name and address of the bookstore."""
    tenant_id = store.tenant.id
    texts = {str(tenant_id), store.tenant.name, store.endpoint_id, store.secret, store.payment_token}
    texts |= {store.customer.email, store.neighbour.email, store.customer.username, store.neighbour.username}
    texts |= {sku for sku in store.skus if sku != SHARED_SKU}
    ids = [*store.orders.values()]
    ids += [str(e) for e in StoredEvent.objects.filter(tenant_id=tenant_id).values_list("event_id", flat=True)]
    ids += [str(p) for p in Product.objects.filter(tenant_id=tenant_id).values_list("id", flat=True)]
    ids += [str(d) for d in WebhookDelivery.objects.filter(tenant_id=tenant_id).values_list("id", flat=True)]
    return Markers(frozenset(t for t in texts | set(ids) if t), frozenset(i[:8] for i in ids))


def leaked(text: str, markers: Markers, *, asked: tuple[str, ...] = ()) -> list[str]:
    """The markers in `text`, once what the caller asked for (echoed in a search box) is removed."""
    for echo in sorted(asked, key=len, reverse=True):
        text = text.replace(echo, "")
    found = {m for m in markers.texts if m in text}
    standing_alone = set(re.findall(r"(?<![0-9a-fA-F-])([0-9a-f]{8})(?![0-9a-fA-F-])", text))
    return sorted(found | (standing_alone & markers.short_ids))


# --- the API, from the URL conf -------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    pattern: str  # such as "orders/<uuid:order_id>/cancel" (under /api/v1/)
    view: type
    name: str

    @property
    def parameters(self) -> list[str]:
        return re.findall(r"<(?:\w+:)?(\w+)>", self.pattern)

    @property
    def methods(self) -> list[str]:
        return [m for m in ("get", "post", "put", "patch", "delete") if hasattr(self.view, m)]

    def url(self, **values: str) -> str:
        path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m.group(1)]), self.pattern)
        return f"/{API}{path}"


def _walk(patterns, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        else:
            yield prefix + str(entry.pattern), entry


def api_routes() -> list[Route]:
    routes = []
    for pattern, entry in _walk(get_resolver().url_patterns):
        if pattern.startswith(API):
            view = getattr(entry.callback, "view_class", None) or getattr(entry.callback, "cls", None)
            routes.append(Route(pattern.removeprefix(API), view, entry.name or ""))
    return routes


# Routes that show no bookstore's data: anyone may read them.
PUBLIC = {"auth-token", "schema", "docs", "asyncapi", "event-schema"}
# Routes that act on the caller's own token or own bookstore's secret only (tenants/tests/test_api_tokens.py,
# inbound/tests/test_webhook.py), no bookstore's data.
OWN_TOKEN = {"auth-token-rotate", "auth-token-revoke", "inbound-distributor-secret"}
# The distributor's route: no token, a signature with the bookstore's own secret; another bookstore's
# order is parked with the same answer as an unknown one (e2e/test_shipment_notices.py).
DISTRIBUTOR = {"inbound-distributor-notice"}

# Each path parameter, and how to find a bookstore's values of it.
PARAMETERS = {
    "order_id": lambda store: [store.orders["confirmed"], store.orders["neighbours"]],
    "sku": lambda store: [s for s in store.skus if s != SHARED_SKU],
    "endpoint_id": lambda store: [store.endpoint_id],
    "delivery_id": lambda store: [
        str(d) for d in WebhookDelivery.objects.filter(endpoint_id=store.endpoint_id).values_list("id", flat=True)[:1]
    ],
}
NOWHERE = {"order_id": uuid.UUID(int=1), "sku": "BOOK-NOWHERE", "endpoint_id": uuid.UUID(int=2)}
NOWHERE["delivery_id"] = uuid.UUID(int=3)

# A valid body for each write, so that nothing but the lookup can refuse it.
BODIES = {
    ("products/<str:sku>/", "patch"): {"title": "Taken over"},
    ("products/<str:sku>/restock", "post"): {"quantity": 5},
    ("orders/<uuid:order_id>/cancel", "post"): {},
    ("orders/<uuid:order_id>/fulfill", "post"): {"tracking_number": "TRK-TAKEN"},
    ("webhook-endpoints/<uuid:endpoint_id>/", "patch"): {"description": "taken over", "is_active": False},
    ("webhook-endpoints/<uuid:endpoint_id>/", "delete"): {},
    ("webhook-endpoints/<uuid:endpoint_id>/rotate-secret", "post"): {},
    ("webhook-endpoints/<uuid:endpoint_id>/recover", "post"): {"since": "2000-01-01T00:00:00Z"},
    ("webhook-endpoints/<uuid:endpoint_id>/deliveries/<uuid:delivery_id>/redeliver", "post"): {},
}

# Each list (a route without parameters that reads), the query parameters to try on it, and how
# many rows the caller must find: their own, nothing more.
LIST_PARAMETERS = [
    {},
    {"page": 2},
    {"page_size": 1000},
    {"limit": 1000},
    {"after": 0, "limit": 1000},
    {"ordering": "-created_at"},
    {"search": "BOOK"},
    {"q": "BOOK"},
    {"status": "confirmed"},
    {"status": "cancelled"},
    {"tenant": "iso-b"},
    {"tenant_id": "{tenant_b}"},
    {"customer": "{customer_b}"},
]
LISTS = {
    "products/": lambda store, user: Product.objects.filter(tenant=store.tenant).count(),
    "orders/": lambda store, user: (
        Order.objects.filter(tenant=store.tenant).filter(**({} if user.is_staff else {"customer": user})).count()
    ),
    "events/": lambda store, user: StoredEvent.objects.filter(tenant_id=store.tenant.id).count(),
    "webhook-endpoints/": lambda store, user: WebhookEndpoint.objects.filter(tenant=store.tenant).count(),
    "dashboard/": None,  # figures, not rows: see test_the_dashboard_and_the_events_feed_...
}


def test_the_matrix_covers_every_api_route_and_admin_page(world):
    """A new route or admin model is tried by the matrix, or this fails saying what to add."""
    for route in api_routes():
        if route.name in PUBLIC | OWN_TOKEN | DISTRIBUTOR:
            continue
        if not route.parameters:
            assert route.pattern in LISTS, f"{route.pattern}: add it to LISTS (what a caller may count there)"
            continue
        for parameter in route.parameters:
            assert parameter in PARAMETERS, f"{route.pattern}: add {parameter!r} to PARAMETERS"
            assert PARAMETERS[parameter](world.b), f"the world has no {parameter} of B: extend e2e.isolation_world"
        for method in route.methods:
            if method != "get":
                assert (route.pattern, method) in BODIES, f"{method.upper()} {route.pattern}: add it to BODIES"
    for model, model_admin in admin.site._registry.items():
        if isinstance(model_admin, TenantScopedAdmin):
            assert rows_of(model, model_admin, world.b), f"the world has no {model.__name__} of B"


def _snapshot(store: Bookstore) -> str:
    """B's state that a leaked write would change."""
    tenant = store.tenant
    rows = {
        "orders": list(
            Order.objects.filter(tenant=tenant).order_by("id").values_list("id", "status", "tracking_number")
        ),
        "products": list(Product.objects.filter(tenant=tenant).order_by("sku").values_list("sku", "title", "on_hand")),
        "endpoints": list(
            WebhookEndpoint.objects.filter(tenant=tenant).values_list("id", "url", "description", "is_active")
        ),
        "secrets": list(
            WebhookSecret.objects.filter(endpoint__tenant=tenant).order_by("id").values_list("id", flat=True)
        ),
        "deliveries": list(
            WebhookDelivery.objects.filter(tenant_id=tenant.id).order_by("id").values_list("id", "status", "attempts")
        ),
        "events": StoredEvent.objects.filter(tenant_id=tenant.id).count(),
    }
    return json.dumps(rows, default=str)


def _call(client: APIClient, method: str, url: str, body: dict | None):
    if method == "get":
        return client.get(url)
    return getattr(client, method)(url, body or {}, format="json")


def _normalised(response, values: dict[str, object]) -> tuple[int, str]:
    """Status and body, with the ids the caller sent replaced (a message may echo them)."""
    text = response.content.decode()
    for name, value in values.items():
        text = text.replace(str(value), f"<{name}>")
    return response.status_code, text


def test_every_api_route_answers_another_bookstores_ids_as_ids_that_exist_nowhere(world):
    """By customer and by staff, every method of every route with a path parameter: B's ids are a
    404 with the one error shape, exactly as ids that exist nowhere (a route the caller's role may
    not use at all refuses every id alike); A's other customer never reaches A's customer's order;
    and nothing of B changed."""
    before = _snapshot(world.b)
    markers = markers_of(world.b)
    callers = [("customer", world.a.customer), ("staff", world.a.staff)]
    tried = 0
    for route in api_routes():
        if route.name in PUBLIC | DISTRIBUTOR or not route.parameters:
            continue
        theirs = {p: PARAMETERS[p](world.b)[0] for p in route.parameters}
        for who, user in callers:
            client = api_client_for(user)
            for method in route.methods:
                body = BODIES.get((route.pattern, method))
                other = _call(client, method, route.url(**theirs), body)
                nowhere = _call(client, method, route.url(**NOWHERE), body)
                where = f"{who} {method.upper()} {route.url(**theirs)}"
                assert _normalised(other, theirs) == _normalised(nowhere, NOWHERE), where
                assert other.status_code in (403, 404), where
                error = other.json()
                assert set(error) == {"detail", "code"}, where
                assert isinstance(error["detail"], str), where
                if other.status_code == 404:
                    assert error["code"] == "not_found", where
                else:
                    assert user.is_staff is False, f"{where}: staff are refused by role only on no route"
                assert not leaked(other.content.decode(), markers, asked=tuple(map(str, theirs.values()))), where
                tried += 1
    # Customers never reach another customer's order of their own bookstore either.
    neighbour = api_client_for(world.a.neighbour)
    carols = {"order_id": world.a.orders["confirmed"]}
    for route in api_routes():
        if route.parameters == ["order_id"]:
            for method in route.methods:
                body = BODIES.get((route.pattern, method))
                response = _call(neighbour, method, route.url(**carols), body)
                nowhere = _call(neighbour, method, route.url(**NOWHERE), body)
                where = f"neighbour {method.upper()} {route.pattern}"
                assert _normalised(response, carols) == _normalised(nowhere, NOWHERE), where
                assert response.status_code in (403, 404), where
                tried += 1
    assert tried > 20
    assert _snapshot(world.b) == before, "a write reached another bookstore"


def test_writes_naming_another_bookstores_skus_or_keys_reveal_nothing(world):
    """A's catalogue may have B's sku; A's customer ordering B's sku is told what an unknown sku
    gets; the same Idempotency-Key and body as B's customer's replay nothing of B's."""
    b_sku = next(s for s in world.b.skus if s != SHARED_SKU)
    customer = api_client_for(world.a.customer)

    def order(sku: str):
        return customer.post(
            "/api/v1/orders/", {"items": [{"sku": sku, "quantity": 1}], "payment_token": "tok_visa"}, format="json"
        )

    theirs, nowhere = order(b_sku), order(NOWHERE["sku"])
    assert _normalised(theirs, {"sku": b_sku}) == _normalised(nowhere, {"sku": NOWHERE["sku"]})
    assert theirs.status_code == 400

    body = {"items": [{"sku": SHARED_SKU, "quantity": 1}], "payment_token": "tok_visa"}
    first = api_client_for(world.b.customer).post("/api/v1/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 201
    mine = customer.post("/api/v1/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert mine.status_code == 201
    assert "Idempotent-Replayed" not in mine.headers
    assert mine.json()["id"] != first.json()["id"]

    staff = api_client_for(world.a.staff)
    created = staff.post("/api/v1/products/", {"sku": b_sku, "title": "Ours too", "price": "1.00"}, format="json")
    assert created.status_code == 201, "a sku is unique within a bookstore only, and says nothing of others"


def _pages(client: APIClient, url: str) -> Iterator[dict]:
    while url:
        response = client.get(url)
        assert response.status_code in (200, 400, 404), (url, response.status_code)
        if response.status_code != 200:  # a bad parameter, or a page past the end
            assert set(response.json()) >= {"detail", "code"}
            return
        page = response.json()
        yield page
        url = page.get("next")


def test_every_list_with_any_query_shows_and_counts_only_the_callers_rows(world):
    markers = markers_of(world.b)
    values = {"{tenant_b}": str(world.b.tenant.id), "{customer_b}": str(world.b.customer.id)}
    for route in api_routes():
        if route.name in PUBLIC or route.parameters or LISTS.get(route.pattern) is None:
            continue
        for who, user in [("customer", world.a.customer), ("staff", world.a.staff)]:
            client = api_client_for(user)
            if client.get(route.url()).status_code == 403:
                assert not user.is_staff, f"{route.pattern} refuses staff"
                continue
            expected = LISTS[route.pattern](world.a, user)
            for parameters in LIST_PARAMETERS:
                query = urlencode({k: values.get(str(v), v) for k, v in parameters.items()})
                url = f"{route.url()}?{query}"
                rows, counts = [], set()
                for page in _pages(client, url):
                    assert not leaked(json.dumps(page), markers), f"{who} {url}"
                    rows += page["results"]
                    counts.add(page["count"])
                if not rows:
                    continue  # a filter that matches nothing, or a page past the end
                assert all(c <= expected for c in counts), f"{who} {url}: counts {counts} > {expected}"
                if parameters in ({}, {"limit": 1000}, {"after": 0, "limit": 1000}):
                    assert len(rows) == expected == max(counts), f"{who} {url}"
    # The lists under an object of the caller's own (an order's events, an endpoint's deliveries).
    staff = api_client_for(world.a.staff)
    mine = {p: PARAMETERS[p](world.a)[0] for p in PARAMETERS}
    for route in api_routes():
        if route.name not in PUBLIC and route.parameters and "get" in route.methods:
            url = route.url(**{p: mine[p] for p in route.parameters})
            for page in _pages(staff, url):
                assert not leaked(json.dumps(page), markers), url


def test_the_dashboard_and_the_events_feed_show_only_the_bookstores_own(world):
    staff = api_client_for(world.a.staff)
    events = [e for page in _pages(staff, "/api/v1/events/?after=0&limit=1000") for e in page["results"]]
    own = StoredEvent.objects.filter(tenant_id=world.a.tenant.id)
    assert {e["id"] for e in events} == {str(i) for i in own.values_list("event_id", flat=True)}
    assert {e["tenantid"] for e in events} == {str(world.a.tenant.id)}
    # From anywhere in B's positions on, still only A's events.
    b_positions = StoredEvent.objects.filter(tenant_id=world.b.tenant.id).values_list("position", flat=True)
    after = min(b_positions)
    later = staff.get(f"/api/v1/events/?after={after}&limit=1000").json()
    assert {e["tenantid"] for e in later["results"]} <= {str(world.a.tenant.id)}
    assert later["count"] == own.filter(position__gt=after).count()

    dashboard = staff.get("/api/v1/dashboard/").json()
    orders = Order.objects.filter(tenant=world.a.tenant)
    assert dashboard["orders_this_month"] == orders.count()
    paid = orders.filter(status__in=[Order.Status.CONFIRMED, Order.Status.FULFILLED])
    assert dashboard["revenue_this_month"] == f"{sum(o.total_amount for o in paid):.2f}"
    assert {p["sku"] for p in dashboard["top_products"]} <= set(world.a.skus)
    assert not leaked(json.dumps(dashboard), markers_of(world.b))

    home = Client()
    home.force_login(world.a.staff)
    for page in ("/admin/", f"/admin/?tenant={world.b.label}"):
        response = home.get(page)
        assert response.status_code == 200
        assert not leaked(response.content.decode(), markers_of(world.b)), page


def test_webhooks_reach_only_the_owning_bookstores_endpoint_and_emails_only_its_customers(world):
    assert world.received
    assert world.emails
    by_store = {world.a.label: [], world.b.label: []}
    for request in world.received:
        signed_by = []
        for store in (world.a, world.b):
            try:
                event = request.verified(store.secret)
            except WebhookVerificationError:
                continue  # not signed with this bookstore's secret
            signed_by.append(store.label)
            assert event.get_extension("tenantid") == str(store.tenant.id), "an event to another bookstore's ERP"
            by_store[store.label].append(event)
        assert len(signed_by) == 1, "each request is signed for exactly one bookstore"
    for store in (world.a, world.b):
        subjects = {e.get_subject() for e in by_store[store.label]}
        assert subjects
        assert subjects <= {*store.orders.values()} | {
            str(p) for p in Product.objects.filter(tenant=store.tenant).values_list("id", flat=True)
        }
    for message in world.emails:
        [store] = [s for s in (world.a, world.b) if any(o[:8] in message["Subject"] for o in s.orders.values())]
        [order_id] = [o for o in store.orders.values() if o[:8] in message["Subject"]]
        owner = Order.objects.get(pk=order_id).customer
        assert message["To"] == owner.email, f"{message['Subject']} went to {message['To']}"
    recipients = {m["To"] for m in world.emails}
    assert {world.a.customer.email, world.b.customer.email, world.a.neighbour.email} <= recipients


# --- the staff admin, from the admin registry -------------------------------------------------


def rows_of(model, model_admin, store: Bookstore) -> list:
    field = model_admin.tenant_field
    column = field if field.endswith("_id") else f"{field}_id"
    return list(model._default_manager.filter(**{column: store.tenant.id}).order_by("pk")[:2])


def _not_found(client: Client, response, asked: str, markers: set[str]) -> bool:
    """A 404, or Django's redirect to the admin home with "doesn't exist" (never the object)."""
    if response.status_code == 404:
        return not leaked(response.content.decode(), markers, asked=(asked,))
    if response.status_code != 302:
        return False
    followed = client.get(response["Location"])
    text = followed.content.decode()
    return "doesn" in text and "exist" in text and not leaked(text, markers, asked=(asked,))


def _admin_urls_with_an_object(model_admin) -> list[str]:
    """The url names of every page of a model admin that takes one object (Django's and its own)."""
    names = []
    for pattern in model_admin.get_urls():
        if isinstance(pattern, URLPattern) and pattern.name and "<" in str(pattern.pattern):
            names.append(pattern.name)
    return names


def _scoped_admins():
    return [(m, a) for m, a in admin.site._registry.items() if isinstance(a, TenantScopedAdmin)]


def test_every_admin_model_staff_may_not_scope_refuses_them_whatever_the_id(world):
    staff = Client()
    staff.force_login(world.a.staff)
    markers = markers_of(world.b)
    for model, model_admin in admin.site._registry.items():
        if isinstance(model_admin, TenantScopedAdmin):
            continue
        opts = model._meta
        changelist = staff.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        assert changelist.status_code == 403, f"{opts.label} is shown to a bookstore's staff but not scoped"
        some = model._default_manager.order_by("pk").first()
        if some is not None:
            for name in _admin_urls_with_an_object(model_admin):
                response = staff.get(reverse(f"admin:{name}", args=[some.pk]))
                assert response.status_code in (302, 403, 404), f"{opts.label} {name}"
                assert not leaked(response.content.decode(), markers, asked=(str(some.pk),))


def test_every_scoped_admin_page_answers_another_bookstores_rows_as_missing(world):
    """Change, delete, history and every page a module added (fulfil, cancel, redrive), by GET and
    POST, with B's rows: not found, never the object; nothing of B changed."""
    before = _snapshot(world.b)
    staff = Client()
    staff.force_login(world.a.staff)
    markers = markers_of(world.b)
    for model, model_admin in _scoped_admins():
        own = rows_of(model, model_admin, world.a)
        for obj in rows_of(model, model_admin, world.b)[:1]:
            for name in _admin_urls_with_an_object(model_admin):
                url = reverse(f"admin:{name}", args=[obj.pk])
                for method in ("get", "post"):
                    body = {"post": "yes", "tracking_number": "TRK-TAKEN", "next": "/admin/"}
                    response = getattr(staff, method)(url, body if method == "post" else None)
                    where = f"staff {method.upper()} {url} ({model.__name__} of B)"
                    django_page = name.rsplit("_", 1)[-1] in ("change", "delete", "history")
                    if response.status_code in (403, 405) and not (django_page and method == "get"):
                        # Refused for the role or the method whatever the row: the same for A's own.
                        mine = getattr(staff, method)(reverse(f"admin:{name}", args=[own[0].pk]), body)
                        assert mine.status_code == response.status_code, where
                        assert not leaked(response.content.decode(), markers), where
                        continue
                    assert _not_found(staff, response, str(obj.pk), markers), f"{where}: {response.status_code}"
    # Django's "view on site" shortcut answers B's row as a row that exists nowhere.
    for model, model_admin in _scoped_admins():
        content_type = ContentType.objects.get_for_model(model)
        theirs = rows_of(model, model_admin, world.b)[0].pk
        nowhere = uuid.UUID(int=9) if isinstance(theirs, uuid.UUID) else 10**12
        answers = [staff.get(f"/admin/r/{content_type.pk}/{pk}/") for pk in (theirs, nowhere)]
        assert [a.status_code for a in answers] == [404, 404], model.__name__
        assert answers[0].content == answers[1].content, model.__name__
    assert _snapshot(world.b) == before, "an admin page changed another bookstore's rows"


def _search_terms(model, model_admin, store: Bookstore) -> list[str]:
    ids = [str(o.pk) for o in rows_of(model, model_admin, store)[:1]]
    terms = [*ids, *(i[:8] for i in ids), store.orders["confirmed"], store.orders["confirmed"][:8]]
    terms += [s for s in store.skus if s != SHARED_SKU]
    terms += [store.customer.email, store.customer.username, f"{store.endpoint_id}"]
    terms += [str(StoredEvent.objects.filter(tenant_id=store.tenant.id).values_list("event_id", flat=True)[0])]
    return terms


def test_every_scoped_admin_list_search_filter_and_action_shows_only_the_staffs_bookstore(world):
    """Changelists with searches for B's ids, skus and addresses, every filter choice, sorting,
    pages and injected tenant filters; every action with B's rows selected."""
    before = _snapshot(world.b)
    staff = Client()
    staff.force_login(world.a.staff)
    markers = markers_of(world.b)
    a_id = world.a.tenant.id
    for model, model_admin in _scoped_admins():
        opts = model._meta
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        first = staff.get(url)
        assert first.status_code == 200, url
        changelist = first.context["cl"]
        queries = [{"q": term} for term in _search_terms(model, model_admin, world.b)]
        # Each filter's choices are drawn on the first page (where an unscoped choice would show);
        # two of each are applied (a filter narrows the scoped rows, it never widens them).
        for spec in changelist.filter_specs:
            for choice in [c for c in spec.choices(changelist) if not c["selected"]][:2]:
                queries.append(dict(parse_qsl(choice["query_string"].lstrip("?"), keep_blank_values=True)))
        queries += [{"o": "1"}, {"o": "-1"}, {"p": "2"}, {"all": ""}]
        queries += [{"tenant_id__exact": str(world.b.tenant.id)}, {"tenant__id__exact": str(world.b.tenant.id)}]
        for query in queries:
            response = staff.get(url, query)
            where = f"{url}?{urlencode(query)}"
            assert response.status_code in (200, 302), where
            if response.status_code == 302:
                continue  # Django's "?e=1" for a lookup it refuses: nothing shown
            asked = tuple(str(v) for v in query.values() if v)
            assert not leaked(response.content.decode(), markers, asked=asked), where
            field = model_admin.tenant_field
            column = field if field.endswith("_id") else f"{field}_id"
            result = response.context["cl"].result_list
            assert all(getattr(row, column) == a_id for row in result), where
        theirs = [str(o.pk) for o in rows_of(model, model_admin, world.b)]
        for action in model_admin.get_actions(first.wsgi_request):
            body = {"action": action, "_selected_action": theirs, "index": 0}
            for step in ({}, {"apply": "1", "post": "yes", "quantity": 5, "reason": "taken", "since": "2000-01-01"}):
                extra = {f"tracking_number_{pk}": "TRK-TAKEN" for pk in theirs}
                response = staff.post(url, {**body, **step, **extra}, follow=True)
                assert response.status_code == 200, f"{action} on {url}"
                assert not leaked(response.content.decode(), markers), f"{action} on {url}"
    assert _snapshot(world.b) == before, "an admin action changed another bookstore's rows"


def test_admin_autocomplete_leaks_nothing_of_another_bookstore(world):
    staff = Client()
    staff.force_login(world.a.staff)
    markers = markers_of(world.b)
    answered = 0
    for model in apps.get_models():
        for field in model._meta.get_fields():
            if not (field.is_relation and field.many_to_one and field.concrete):
                continue
            for term in ("", "BOOK", world.b.customer.username, world.b.tenant.name[:5]):
                query = {
                    "app_label": model._meta.app_label,
                    "model_name": model._meta.model_name,
                    "field_name": field.name,
                    "term": term,
                }
                response = staff.get("/admin/autocomplete/", query)
                assert response.status_code in (200, 403, 404), query
                assert not leaked(response.content.decode(), markers, asked=(term,)), query
                answered += response.status_code == 200
    assert answered, "some autocomplete answered (of a scoped model), so a leak would show"


# --- private values, on every page of both histories --------------------------------------------


def test_no_page_or_api_answer_shows_a_payment_token_in_clear(world, operator_admin):
    """Every list and every row's page of the admin, for the bookstore's staff and for an operator,
    and every API read of the staff: the payment tokens of the history (a private field of
    `order.placed`, and `tok_timeout` quoted by the provider in the dead letters' errors) appear
    nowhere in clear."""
    tokens = [world.a.payment_token, world.b.payment_token, "tok_timeout"]
    staff = Client()
    staff.force_login(world.a.staff)
    read = 0
    for who, client in (("staff", staff), ("operator", operator_admin)):
        for model, _ in admin.site._registry.items():
            opts = model._meta
            changelist = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
            if changelist.status_code == 403:
                continue
            rows = list(changelist.context["cl"].result_list[:3])
            pages = [changelist] + [
                client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[row.pk])) for row in rows
            ]
            for page in pages:
                assert page.status_code == 200, f"{who} {opts.label}"
                assert not [t for t in tokens if t in page.content.decode()], f"{who} {opts.label}"
                read += 1
    api = api_client_for(world.a.staff)
    mine = {p: PARAMETERS[p](world.a)[0] for p in PARAMETERS}
    for route in api_routes():
        if route.name not in PUBLIC and "get" in route.methods:
            response = api.get(route.url(**{p: mine[p] for p in route.parameters}))
            assert response.status_code == 200, route.pattern
            assert not [t for t in tokens if t in response.content.decode()], route.pattern
            read += 1
    stuck = api.get(f"/api/v1/orders/{world.a.orders['stuck']}/events/").content.decode()
    assert "GatewayTimeout" in stuck, "the dead letter's error is on the timeline, its token masked"
    assert read > 30
