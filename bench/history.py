"""A long history in the real tables, written fast with SQL: what `history_bench.py` measures on.

`fill` writes `events` stored events as order lives, oldest first, spread evenly over the past
`months` months up to an hour ago, and beside them what those events leave in the other tables
on a live system:

* stored events (`domain_events_storedevent`): two orders make nine events, one order
  `order.placed`, `inventory.reserved`, `payment.captured`, `order.confirmed`, `order.fulfilled`,
  the next the same without the last (4.5 events per order, as `bench/capacity.py` measured 4.52);
  positions 1..events in time order, revisions per order, five tenants of 40, 25, 20, 10 and 5 %;
* one stream row per order (`domain_events_stream`);
* a delivery for each handler the code subscribes to the event's type (`Shape.handlers`: the
  subscriptions of today's code give 2.56 per event, as `capacity.py` measured 2.55), nearly
  all succeeded, one in 400 dead, one in 500 skipped, none open, so that relays started on the
  history have nothing of it to run;
* the orders (`orders_order`, each with its customer) and their summaries in the dashboard's live
  generation (`analytics_ordersummary`);
* one audit entry per event (`audit_auditentry`; sequence = position, and the hashes are made up:
  `verify_audit_log` does not hold on a filled database);
* one webhook delivery per event of the biggest tenant that its one endpoint takes (every type
  but `payment.captured`, as `webhooks.queue_webhook_deliveries` subscribes).

Then the position readers' checkpoints stand at the last position and the subscriber rows are
gone (relays register them again at the head), so nothing replays or covers the history.

Ids and hashes grow with the position (a kind, then the number in hex), so each unique index is
written at its end as a live table's would be in time order; indexes stay as the migrations made
them. Each chunk of `chunk` events is a few `INSERT … SELECT generate_series` statements, on one
connection or several side by side; the caller commits (or not) and vacuums.
"""

from __future__ import annotations

import queue
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timedelta

# One pair of orders: the first fulfilled (five events), the second confirmed (four).
LIFE = ("order.placed", "inventory.reserved", "payment.captured", "order.confirmed", "order.fulfilled")
EVENTS_PER_PAIR = 9
TENANTS = 5
# Tenant of order k (k % 20): 40 %, 25 %, 20 %, 10 %, 5 % of the orders.
TENANT_OF = (
    "CASE WHEN {k} %% 20 < 8 THEN 1 WHEN {k} %% 20 < 13 THEN 2 WHEN {k} %% 20 < 17 THEN 3"
    " WHEN {k} %% 20 < 19 THEN 4 ELSE 5 END"
)
WEBHOOK_TYPES = tuple(t for t in LIFE if t != "payment.captured")
# Tables the history lives in (emptied before a fill), the fan-out counters of the bench aside.
TABLES = (
    "domain_events_delivery",
    "domain_events_storedevent",
    "domain_events_stream",
    "domain_events_checkpoint",
    "domain_events_subscriber",
    "domain_events_parkedevent",
    "audit_auditentry",
    "webhooks_webhookattempt",
    "webhooks_webhookdelivery",
    "analytics_ordersummary",
    "analytics_tenantmonth",
    "analytics_tenantday",
    "analytics_tenanttotals",
    "analytics_productsales",
    "orders_orderitem",
    "orders_order",
)


def uid(kind: int, number: str) -> str:
    """SQL for a uuid that sorts with `number` (an SQL bigint expression): the kind, then the number."""
    return f"(lpad(to_hex({kind}), 4, '0') || lpad(to_hex({number}), 28, '0'))::uuid"


EVENT, ORDER, CAUSATION, RESERVATION, PAYMENT, WEBHOOK = range(1, 7)
# The order (k) and its slot in its life (s) of the event at position g.
ORDER_OF = "(2 * ((g - 1) / 9) + CASE WHEN (g - 1) %% 9 >= 5 THEN 1 ELSE 0 END)"
SLOT_OF = "(CASE WHEN (g - 1) %% 9 >= 5 THEN (g - 1) %% 9 - 5 ELSE (g - 1) %% 9 END)"

INSERT_EVENTS = f"""
INSERT INTO domain_events_storedevent
    (event_id, type, version, tenant_id, aggregate_id, occurred_at, recorded_at, correlation_id, causation_id,
     actor, payload, position, revision)
SELECT {uid(EVENT, "g")}, (%(life)s::text[])[o.s + 1], 1, o.tenant_id, o.order_id, o.at, o.at,
       'order-' || lpad(o.k::text, 10, '0'), {uid(CAUSATION, "g")},
       CASE WHEN o.s = 0 THEN 'customer:' || o.customer_id ELSE 'system' END,
       CASE o.s
         WHEN 0 THEN jsonb_build_object(
             'order_id', o.order_id, 'customer_id', o.customer_id, 'currency', 'USD', 'total_amount', o.total,
             'lines', (SELECT jsonb_agg(jsonb_build_object(
                          'sku', 'SKU-' || lpad(((o.k * 7 + i * 13) %% 500)::text, 4, '0'),
                          'title', 'Book ' || ((o.k * 7 + i * 13) %% 500), 'quantity', 1 + (o.k + i) %% 3,
                          'unit_price', ((500 + (o.k * 31 + i * 17) %% 4500) / 100.0)::numeric(10, 2)::text))
                         FROM generate_series(0, o.k %% 3) i))
         WHEN 1 THEN jsonb_build_object('order_id', o.order_id, 'reservation_id', {uid(RESERVATION, "o.k")})
         WHEN 2 THEN jsonb_build_object('order_id', o.order_id, 'payment_id', {uid(PAYMENT, "o.k")},
                                        'amount', o.total, 'currency', 'USD')
         WHEN 3 THEN jsonb_build_object('order_id', o.order_id, 'total_amount', o.total, 'currency', 'USD')
         ELSE jsonb_build_object('order_id', o.order_id, 'tracking_number', 'TRK' || lpad(o.k::text, 10, '0'),
                                 'shipped_at', to_char(o.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
       END,
       g, o.s + 1
  FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) g
 CROSS JOIN LATERAL (
       SELECT {ORDER_OF} AS k, {SLOT_OF} AS s,
              %(t0)s::timestamptz + (g - 1) * %(step)s * interval '1 second' AS at) p
 CROSS JOIN LATERAL (
       SELECT p.k, p.s, p.at, {uid(ORDER, "p.k")} AS order_id,
              (%(tenants)s::uuid[])[{TENANT_OF.format(k="p.k")}] AS tenant_id,
              (%(customers)s::uuid[])[{TENANT_OF.format(k="p.k")}] AS customer_id,
              ((1 + p.k %% 3) * (500 + (p.k * 31) %% 4500) / 100.0)::numeric(12, 2)::text AS total) o
"""

UPSERT_STREAMS = """
INSERT INTO domain_events_stream (aggregate_id, aggregate_type, tenant_id, revision)
SELECT aggregate_id, 'order', tenant_id, max(revision)
  FROM domain_events_storedevent WHERE position BETWEEN %(lo)s AND %(hi)s
 GROUP BY aggregate_id, tenant_id
    ON CONFLICT (aggregate_id) DO UPDATE SET revision = greatest(domain_events_stream.revision, EXCLUDED.revision)
"""

# Dead and skipped by a pattern of position and handler; the rest succeeded 50 ms after the event.
INSERT_DELIVERIES = """
INSERT INTO domain_events_delivery
    (stored_event_id, handler, event_type, tenant_id, aggregate_id, revision, status, attempts, next_attempt_at,
     lease_token, last_error, held_by, sent_at, started_at, resolution, created_at, updated_at, completed_at,
     event_recorded_at)
SELECT e.id, h.handler, e.type, e.tenant_id, e.aggregate_id, e.revision, s.status,
       CASE s.status WHEN 'dead' THEN 5 ELSE 1 END,
       e.recorded_at + interval '1 second', NULL,
       CASE s.status WHEN 'succeeded' THEN '' ELSE 'TimeoutError: upstream did not answer' END,
       NULL, NULL, NULL,
       CASE s.status WHEN 'skipped' THEN 'skipped by history-root: bad data' ELSE '' END,
       e.recorded_at, e.recorded_at + interval '50 milliseconds',
       CASE WHEN s.status <> 'dead' THEN e.recorded_at + interval '50 milliseconds' END,
       e.recorded_at
  FROM domain_events_storedevent e
  JOIN unnest(%(types)s::text[], %(handlers)s::text[]) WITH ORDINALITY h(type, handler, n) ON h.type = e.type
 CROSS JOIN LATERAL (SELECT CASE WHEN (e.position * 17 + h.n) %% 400 = 0 THEN 'dead'
                                 WHEN (e.position * 13 + h.n) %% 500 = 1 THEN 'skipped'
                                 ELSE 'succeeded' END AS status) s
 WHERE e.position BETWEEN %(lo)s AND %(hi)s
"""

INSERT_ORDERS = """
INSERT INTO orders_order
    (id, tenant_id, customer_id, status, cancellation_reason, total_amount, currency, tracking_number, shipped_at,
     delivered_at, created_at, updated_at)
SELECT e.aggregate_id, e.tenant_id, (e.payload ->> 'customer_id')::uuid, o.status, '',
       (e.payload ->> 'total_amount')::numeric, 'USD',
       CASE o.status WHEN 'fulfilled' THEN 'TRK' || lpad(o.k::text, 10, '0') ELSE '' END,
       CASE o.status WHEN 'fulfilled' THEN e.recorded_at + interval '1 day' END,
       NULL, e.recorded_at, e.recorded_at
  FROM domain_events_storedevent e
 CROSS JOIN LATERAL (SELECT 2 * ((e.position - 1) / 9) + CASE WHEN (e.position - 1) %% 9 >= 5 THEN 1 ELSE 0 END AS k) p
 CROSS JOIN LATERAL (SELECT p.k, CASE WHEN p.k %% 2 = 0 THEN 'fulfilled' ELSE 'confirmed' END AS status) o
 WHERE e.position BETWEEN %(lo)s AND %(hi)s AND e.type = 'order.placed'
"""

INSERT_SUMMARIES = """
INSERT INTO analytics_ordersummary
    (generation, order_id, tenant_id, customer_id, status, cancellation_reason, item_count, total_amount, currency,
     top_item_sku, top_item_title, lines, placed_at, placed_on, confirmed_at, fulfilled_at, cancelled_at, position)
SELECT %(generation)s, o.id, o.tenant_id, o.customer_id, o.status, '', jsonb_array_length(e.payload -> 'lines'),
       o.total_amount, o.currency, e.payload -> 'lines' -> 0 ->> 'sku', e.payload -> 'lines' -> 0 ->> 'title',
       e.payload -> 'lines', o.created_at, (o.created_at AT TIME ZONE 'UTC')::date,
       o.created_at + interval '3 seconds', o.shipped_at, NULL,
       e.position + CASE o.status WHEN 'fulfilled' THEN 4 ELSE 3 END
  FROM domain_events_storedevent e JOIN orders_order o ON o.id = e.aggregate_id
 WHERE e.position BETWEEN %(lo)s AND %(hi)s AND e.type = 'order.placed'
"""


def _hash(position: str) -> str:
    return f"lpad(to_hex({position}), 64, '0')"


INSERT_AUDIT = f"""
INSERT INTO audit_auditentry
    (tenant_id, sequence, event_id, event_type, aggregate_id, actor, correlation_id, causation_id, payload,
     occurred_at, recorded_at, position, previous_hash, hash)
SELECT e.tenant_id, e.position, e.event_id, e.type, e.aggregate_id, e.actor, e.correlation_id, e.causation_id,
       e.payload, e.occurred_at, e.recorded_at + interval '100 milliseconds', e.position,
       {_hash("(e.position - 1)")}, {_hash("e.position")}
  FROM domain_events_storedevent e
 WHERE e.position BETWEEN %(lo)s AND %(hi)s
"""

INSERT_WEBHOOK_DELIVERIES = f"""
INSERT INTO webhooks_webhookdelivery
    (id, tenant_id, endpoint_id, event_id, event_type, subject, position, payload, status, attempts,
     attempts_before_round, next_attempt_at, lease_token, leased_until, last_status_code, last_error,
     last_attempt_at, enqueued_at, created_at, updated_at, completed_at)
SELECT {uid(WEBHOOK, "e.position")}, e.tenant_id, %(endpoint)s, e.event_id, e.type, e.aggregate_id::text, e.position,
       jsonb_build_object('specversion', '1.0', 'id', e.event_id, 'source', '/shelfwise/history', 'type', e.type,
                          'subject', e.aggregate_id, 'time', e.occurred_at, 'sequence', e.position,
                          'datacontenttype', 'application/json', 'data', e.payload),
       s.status, CASE s.status WHEN 'dead' THEN 8 ELSE 1 END, 0, e.recorded_at + interval '1 second', NULL, NULL,
       CASE s.status WHEN 'dead' THEN 503 ELSE 204 END,
       CASE s.status WHEN 'dead' THEN 'HTTP 503' ELSE '' END,
       e.recorded_at + interval '1 second', e.recorded_at + interval '200 milliseconds',
       e.recorded_at + interval '100 milliseconds', e.recorded_at + interval '1 second',
       CASE s.status WHEN 'succeeded' THEN e.recorded_at + interval '1 second' END
  FROM domain_events_storedevent e
 CROSS JOIN LATERAL (SELECT CASE WHEN e.position %% 600 = 7 THEN 'dead' ELSE 'succeeded' END AS status) s
 WHERE e.position BETWEEN %(lo)s AND %(hi)s AND e.tenant_id = %(endpoint_tenant)s AND e.type = ANY(%(webhook_types)s)
"""

# Each chunk, in order; the name is what progress and the counts call it.
CHUNK_STATEMENTS = (
    ("events", INSERT_EVENTS),
    ("streams", UPSERT_STREAMS),
    ("deliveries", INSERT_DELIVERIES),
    ("orders", INSERT_ORDERS),
    ("order summaries", INSERT_SUMMARIES),
    ("audit entries", INSERT_AUDIT),
    ("webhook deliveries", INSERT_WEBHOOK_DELIVERIES),
)


@dataclass
class Shape:
    """Who the history belongs to and who handles it; `prepare_shape` makes one."""

    tenants: list[uuid.UUID]
    customers: list[uuid.UUID]
    # event type -> the handlers subscribed to it
    handlers: dict[str, list[str]]
    endpoint: uuid.UUID
    generation: int
    trackers: list[str]
    months: int = 12
    now: datetime = field(default_factory=lambda: datetime.now().astimezone())

    @property
    def start(self) -> datetime:
        """The first day of the month `months` months before this one: the history's first month is whole."""
        return months_after(self.now, -self.months)

    @property
    def end(self) -> datetime:
        return self.now - timedelta(hours=1)


def prepare_shape(*, months: int = 12, prefix: str = "history") -> Shape:
    """Tenants, one customer each, the biggest tenant's staff and webhook endpoint, an operator,
    the dashboard's live generation, and the handlers the code subscribes (Django set up)."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from analytics.models import Generation
    from domain_events.registry import registry
    from domain_events.subscriptions import subscriptions, type_names
    from tenants.models import Tenant
    from webhooks.models import WebhookEndpoint

    User = get_user_model()
    tenants = [
        Tenant.objects.get_or_create(slug=f"{prefix}-{i}", defaults={"name": f"History store {i}"})[0]
        for i in range(1, TENANTS + 1)
    ]
    customers = [
        User.objects.get_or_create(username=f"{prefix}-customer-{i}", defaults={"tenant": tenant})[0]
        for i, tenant in enumerate(tenants, 1)
    ]
    if not User.objects.filter(username=f"{prefix}-staff").exists():
        User.objects.create_user(f"{prefix}-staff", "", "x", tenant=tenants[0], is_staff=True)
    if not User.objects.filter(username=f"{prefix}-root").exists():
        User.objects.create_superuser(f"{prefix}-root", "", "x", tenant=None)
    endpoint = WebhookEndpoint.objects.filter(tenant=tenants[0]).first() or WebhookEndpoint.objects.create(
        tenant=tenants[0], url="https://erp.example.com/hooks", description="history"
    )
    generation = Generation.objects.get_or_create(projection="analytics.sales", target="live")[0].id
    known = registry.types()
    handlers = {
        kind: sorted(s.name for s in subscriptions.all() if kind in type_names(s)) for kind in LIFE if kind in known
    }
    return Shape(
        tenants=[t.id for t in tenants],
        customers=[c.id for c in customers],
        handlers=handlers,
        endpoint=endpoint.id,
        generation=generation,
        trackers=[t.name for t in subscriptions.trackers()],
        months=months,
        now=timezone.now(),
    )


def deliveries_per_order(shape: Shape) -> float:
    """Deliveries an order makes on average (a pair of orders: one with `order.fulfilled`, one without)."""
    pair = 2 * sum(len(shape.handlers.get(t, [])) for t in LIFE) - len(shape.handlers.get(LIFE[-1], []))
    return pair / 2


def months_after(moment: datetime, months: int) -> datetime:
    """The first instant of the month `months` months after `moment`'s (before it, if negative)."""
    year, month = divmod(moment.year * 12 + moment.month - 1 + months, 12)
    return moment.replace(year=year, month=month + 1, day=1, hour=0, minute=0, second=0, microsecond=0)


Execute = Callable[[str, dict], object]


def fill(
    executes: Execute | Sequence[Execute],
    *,
    events: int,
    shape: Shape,
    chunk: int = 100_000,
    say: Callable[[str], None] = print,
) -> dict[str, float]:
    """Write a history of `events` stored events (positions 1..events) into empty tables.

    `executes`: what runs one statement (`execute(sql, params)` of a psycopg connection in
    autocommit or of a Django cursor), or one such per connection to write chunks side by side.
    Prints progress after each chunk; returns the seconds each kind of row took, over all
    connections.
    """
    runners = [executes] if callable(executes) else list(executes)
    execute = runners[0]
    step = (shape.end - shape.start).total_seconds() / max(1, events)
    pairs = [(kind, handler) for kind, names in shape.handlers.items() for handler in names]
    params = {
        "life": list(LIFE),
        "t0": shape.start,
        "step": step,
        "tenants": shape.tenants,
        "customers": shape.customers,
        "types": [kind for kind, _ in pairs],
        "handlers": [handler for _, handler in pairs],
        "generation": shape.generation,
        "endpoint": shape.endpoint,
        "endpoint_tenant": shape.tenants[0],
        "webhook_types": list(WEBHOOK_TYPES),
    }
    seconds = dict.fromkeys((name for name, _ in CHUNK_STATEMENTS), 0.0)
    idle: queue.SimpleQueue[Execute] = queue.SimpleQueue()
    for run in runners:
        # The planner prices the per-row subqueries high enough to compile each statement: nearly
        # a second of JIT per chunk for statements that run once.
        run("SET jit = off", {})
        idle.put(run)

    def write(lo: int, hi: int) -> tuple[int, dict[str, float]]:
        # A chunk's statements in order on one connection: its deliveries, orders and audit
        # entries read its events. Chunks side by side share only the stream row of the order
        # cut at their boundary, which the upsert takes in turn.
        run, spent = idle.get(), {}
        try:
            for name, statement in CHUNK_STATEMENTS:
                t0 = time.monotonic()
                run(statement, {**params, "lo": lo, "hi": hi})
                spent[name] = time.monotonic() - t0
        finally:
            idle.put(run)
        return hi - lo + 1, spent

    started, written = time.monotonic(), 0
    with ThreadPoolExecutor(max_workers=len(runners)) as pool:
        chunks = [pool.submit(write, lo, min(events, lo + chunk - 1)) for lo in range(1, events + 1, chunk)]
        for done in as_completed(chunks):
            count, spent = done.result()
            written += count
            for name, value in spent.items():
                seconds[name] += value
            rate = written / (time.monotonic() - started)
            say(f"    filled {written:,} of {events:,} events ({rate:,.0f} events/s with everything beside them)")
    execute("SELECT setval('domain_events_position_seq', %(n)s)", {"n": events})
    # Position readers have read the history; relays register their handlers again at the head.
    for name in shape.trackers:
        execute(
            "INSERT INTO domain_events_checkpoint (name, position, updated_at, attempts, last_error)"
            " VALUES (%(name)s, %(n)s, now(), 0, '')"
            " ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, retry_at = NULL",
            {"name": name, "n": events},
        )
    execute("DELETE FROM domain_events_subscriber", {})
    return seconds
