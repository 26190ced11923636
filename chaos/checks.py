"""What a chaos run proves once everything has drained (the guarantees of docs/architecture.md), read from the database,
the receivers and the project's own commands. Each check is a name, a verdict and a detail."""

from __future__ import annotations

import subprocess
from collections import Counter, defaultdict
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

import requests
from django.db.models import Count, Max, Sum
from django.utils import timezone

from audit.models import AuditEntry
from chaos.distributor import Distributor, SentNotice
from chaos.load import EXPECTED, SCARCE_SKU, Load
from chaos.receivers import MailServer, WebhookReceiver
from chaos.services import PYTHON, ROOT
from domain_events.models import Checkpoint, Delivery, ParkedEvent, StoredEvent
from domain_events.subscriptions import Mode, subscriptions, type_names
from inbound.models import InboxMessage, LostShipment
from inventory.models import Product, Reservation, ReservationLine
from notifications.models import EmailMessage
from orders.models import Order, OrderItem
from payments.models import Payment, SimulatedCharge
from tenants.models import Tenant
from webhooks.models import OPEN as WEBHOOK_OPEN
from webhooks.models import WebhookDelivery

FINAL = ("confirmed", "fulfilled", "delivered", "cancelled")
# Paid for, and the stock taken: what a capture, a reservation and the revenue count.
PAID = ("confirmed", "fulfilled", "delivered")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def settled(tenant: Tenant) -> str | None:
    """What still moves (None once everything has drained): orders, deliveries, readers, sends."""
    if Order.objects.filter(tenant=tenant, status="placed").exists():
        return "orders still placed"
    if StoredEvent.objects.filter(position__isnull=True).exists():
        return "events not yet numbered"
    if Delivery.objects.filter(status__in=Delivery.OPEN).exists():
        return "deliveries open"
    if WebhookDelivery.objects.filter(status__in=WEBHOOK_OPEN).exists():
        return "webhook deliveries open"
    if EmailMessage.objects.exclude(status=EmailMessage.Status.SENT).exists():
        return "e-mails not sent"
    head = StoredEvent.objects.aggregate(head=Max("position"))["head"] or 0
    for tracker in subscriptions.trackers():
        checkpoint = Checkpoint.objects.filter(name=tracker.name).values_list("position", flat=True).first()
        if (checkpoint or 0) < head:
            return f"position reader {tracker.name} behind the head"
    return None


def _command(*argv: str, env: dict[str, str]) -> tuple[int, str]:
    result = subprocess.run(
        [PYTHON, "manage.py", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    return result.returncode, (result.stdout + result.stderr).strip()


def run_checks(
    *,
    tenant: Tenant,
    load: Load,
    receiver: WebhookReceiver,
    mail: MailServer,
    base_url: str,
    staff_token: str,
    initial_stock: dict[str, int],
    endpoint_id: str,
    env: dict[str, str],
    distributor: Distributor,
) -> list[Check]:
    checks: list[Check] = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append(Check(name, bool(ok), detail))

    orders = Order.objects.filter(tenant=tenant)
    placed = {o.id: o for o in load.placed}
    check(
        "every order placed over HTTP",
        len(placed) == load.count and not load.errors and orders.count() == load.count,
        f"{len(placed)} of {load.count} accepted, {orders.count()} stored, client errors: {load.errors[:3]}",
    )

    statuses = Counter(orders.values_list("status", flat=True))
    check("every order in a final state", set(statuses) <= set(FINAL), dict(statuses).__repr__())

    wrong = []
    for order_id, status, reason in orders.values_list("id", "status", "cancellation_reason"):
        intent = placed.get(str(order_id))
        if intent is not None and (status, reason) != EXPECTED[intent.intent]:
            wrong.append(f"{order_id} {intent.intent}: {status} {reason}")
    check("every order ended as its client meant", not wrong, f"{len(wrong)} otherwise {wrong[:3]}")

    open_deliveries = Delivery.objects.exclude(status=Delivery.Status.SUCCEEDED).count()
    open_webhooks = WebhookDelivery.objects.exclude(status=WebhookDelivery.Status.SUCCEEDED).count()
    unsent = EmailMessage.objects.exclude(status=EmailMessage.Status.SENT).count()
    check(
        "no delivery left pending or dead",
        not (open_deliveries or open_webhooks or unsent),
        f"handler deliveries {open_deliveries}, webhook deliveries {open_webhooks}, e-mails {unsent}",
    )

    # No event lost: every handler succeeded once for every event it subscribes to.
    events_by_type = Counter(StoredEvent.objects.values_list("type", flat=True))
    succeeded = Counter(Delivery.objects.filter(status=Delivery.Status.SUCCEEDED).values_list("handler", "event_type"))
    lost = []
    for subscription in subscriptions.all():
        if subscription.mode is Mode.INLINE:
            continue
        for event_type in type_names(subscription):
            if succeeded[(subscription.name, event_type)] != events_by_type[event_type]:
                lost.append(
                    f"{subscription.name}/{event_type}: {succeeded[(subscription.name, event_type)]}"
                    f" of {events_by_type[event_type]}"
                )
    head = StoredEvent.objects.aggregate(head=Max("position"))["head"] or 0
    behind = [
        t.name
        for t in subscriptions.trackers()
        if (Checkpoint.objects.filter(name=t.name).values_list("position", flat=True).first() or 0) < head
    ]
    parked = ParkedEvent.objects.count()
    unnumbered = StoredEvent.objects.filter(position__isnull=True).count()
    check(
        "no event lost",
        not (lost or behind or parked or unnumbered),
        f"{sum(events_by_type.values())} events; short handlers {lost[:3]}, readers behind {behind},"
        f" parked {parked}, unnumbered {unnumbered}",
    )
    duplicates = Delivery.objects.values("stored_event_id", "handler").annotate(n=Count("id")).filter(n__gt=1).count()
    check("one delivery record per event and handler", not duplicates, f"{duplicates} doubled")

    # One stock movement per reservation.
    per_order = Counter(
        StoredEvent.objects.filter(type__in=["inventory.reserved", "inventory.reservation_failed"]).values_list(
            "payload__order_id", "type"
        )
    )
    doubled = [key for key, n in per_order.items() if n > 1]
    both = {o for o, t in per_order if t == "inventory.reserved"} & {
        o for o, t in per_order if t == "inventory.reservation_failed"
    }
    reservations = Reservation.objects.filter(tenant=tenant)
    lines_by_order: dict[str, dict[str, int]] = defaultdict(dict)
    for order_id, sku, quantity in ReservationLine.objects.filter(reservation__tenant=tenant).values_list(
        "reservation__order_id", "product__sku", "quantity"
    ):
        lines_by_order[str(order_id)][sku] = quantity
    items_by_order: dict[str, dict[str, int]] = defaultdict(dict)
    for order_id, sku, quantity in OrderItem.objects.filter(order__tenant=tenant).values_list(
        "order_id", "sku", "quantity"
    ):
        items_by_order[str(order_id)][sku] = quantity
    mismatched = [o for o, lines in lines_by_order.items() if lines != items_by_order[o]]
    paid_without = (
        orders.filter(status__in=PAID).exclude(id__in=reservations.exclude(lines=None).values("order_id")).count()
    )
    check(
        "one stock movement per reservation",
        not (doubled or both or mismatched or paid_without),
        f"{reservations.count()} reservations; events doubled {len(doubled)}, reserved and failed {len(both)},"
        f" lines unlike the order {len(mismatched)}, paid orders without stock {paid_without}",
    )

    # One capture per order (and one refund per refunded payment), on the provider's side.
    payments = Payment.objects.filter(tenant=tenant)
    charged = list(payments.filter(status__in=["captured", "refunded"]).values_list("provider_reference", flat=True))
    captures = Counter(
        SimulatedCharge.objects.filter(kind="capture", result="captured").values_list("reference", flat=True)
    )
    paid_orders = orders.filter(status__in=PAID).count()
    refunded = payments.filter(status="refunded").count()
    refunds = SimulatedCharge.objects.filter(kind="refund", result="refunded").count()
    per_order = Counter(StoredEvent.objects.filter(type="payment.captured").values_list("payload__order_id", flat=True))
    requests_made = SimulatedCharge.objects.aggregate(n=Sum("requests"))["n"] or 0
    check(
        "one capture per order",
        sorted(charged) == sorted(captures)
        and max(captures.values(), default=0) <= 1
        and paid_orders == payments.filter(status="captured").count()
        and refunds == refunded
        and max(per_order.values(), default=0) <= 1,
        f"{sum(captures.values())} captures for {len(charged)} payments charged ({paid_orders} paid orders),"
        f" {refunds} refunds for {refunded} refunded payments; gateway requests repeated with the same key"
        f" (answered from its ledger) {requests_made - SimulatedCharge.objects.count()}",
    )

    # At most one e-mail per event and template; every one the mail server got is logged as sent.
    notifying = StoredEvent.objects.filter(
        tenant_id=tenant.id, type__in=["order.confirmed", "order.cancelled", "order.fulfilled", "order.delivered"]
    ).count()
    sent = EmailMessage.objects.filter(tenant_id=tenant.id, status=EmailMessage.Status.SENT)
    per_event = sent.values("event_id", "template").annotate(n=Count("id")).filter(n__gt=1).count()
    sent_ids = set(sent.values_list("message_id", flat=True))
    received = set(mail.message_ids)
    copies = sum(n - 1 for n in mail.message_ids.values())
    check(
        "one e-mail per event and template",
        not per_event and sent.count() == notifying and received == sent_ids,
        f"{sent.count()} sent for {notifying} events, {len(received)} distinct received, repeated copies"
        f" (same Message-ID, dropped by the receiver) {copies}",
    )

    # One succeeded webhook delivery per event and endpoint; the receiver agrees by webhook-id.
    deliveries = WebhookDelivery.objects.filter(endpoint_id=endpoint_id)
    tenant_events = StoredEvent.objects.filter(tenant_id=tenant.id).count()
    per_pair = deliveries.values("event_id").annotate(n=Count("id")).filter(n__gt=1).count()
    succeeded_ids = {str(i) for i in deliveries.filter(status="succeeded").values_list("id", flat=True)}
    accepted = set(receiver.accepted)
    redelivered = sum(n - 1 for n in receiver.accepted.values())
    check(
        "one webhook per event and endpoint",
        not per_pair
        and len(succeeded_ids) == tenant_events
        and accepted == succeeded_ids
        and receiver.bad_signatures == 0,
        f"{len(succeeded_ids)} succeeded for {tenant_events} events, {len(accepted)} webhook-ids accepted,"
        f" repeats after a 2xx (dropped by webhook-id) {redelivered}, bad signatures {receiver.bad_signatures},"
        f" torn by a killed sender {receiver.torn_requests}",
    )

    audit = AuditEntry.objects.count()
    missing = StoredEvent.objects.exclude(event_id__in=AuditEntry.objects.values("event_id")).count()
    total_events = StoredEvent.objects.count()
    check(
        "one audit entry per event",
        audit == total_events and not missing,
        f"{audit} entries for {total_events} events, {missing} missing",
    )

    # Stock conserved: what there was = on the shelf + shipped (fulfilled, delivered or lost in
    # transit); reserved = held by confirmed orders.
    shipped: Counter[str] = Counter()
    held: Counter[str] = Counter()
    for sku, quantity, status in OrderItem.objects.filter(order__tenant=tenant).values_list(
        "sku", "quantity", "order__status"
    ):
        if status in ("fulfilled", "delivered"):
            shipped[sku] += quantity
        elif status == "confirmed":
            held[sku] += quantity
    reserved_lines: Counter[str] = Counter()
    for sku, quantity in ReservationLine.objects.filter(
        reservation__tenant=tenant, reservation__status="reserved"
    ).values_list("product__sku", "quantity"):
        reserved_lines[sku] += quantity
    unbalanced = []
    for product in Product.objects.filter(tenant=tenant):
        start = initial_stock[product.sku]
        if (
            product.on_hand + shipped[product.sku] != start
            or product.reserved != held[product.sku]
            or product.reserved != reserved_lines[product.sku]
        ):
            unbalanced.append(
                f"{product.sku}: start {start}, on hand {product.on_hand}, shipped"
                f" {shipped[product.sku]}, reserved {product.reserved}, held {held[product.sku]}"
            )
    scarce = Product.objects.get(tenant=tenant, sku=SCARCE_SKU)
    check(
        "stock conserved",
        not unbalanced and scarce.reserved == 0,
        f"{sum(shipped.values())} shipped, {sum(held.values())} reserved; {unbalanced[:3]}",
    )

    staff_fulfilled = {o.id for o in load.placed if o.intent == "fulfil_deliver"}
    checks.append(notice_check(tenant, distributor, staff_fulfilled))

    code, out = _command("check_projections", env=env)
    check("check_projections exits 0", code == 0, out.splitlines()[-1] if out else "")
    code, out = _command("verify_audit_log", env=env)
    check("verify_audit_log exits 0", code == 0, out.splitlines()[-1] if out else "")

    check(*_dashboard_check(tenant, base_url, staff_token))
    return checks


# --- the distributor's shipment notices ---------------------------------------------------------

# The event a notice of each kind records when it applies.
NOTICE_EVENTS = {"shipped": "order.fulfilled", "delivered": "order.delivered", "lost": "order.shipment_lost"}


@dataclass(frozen=True)
class InboxRow:
    """A notice as the inbox recorded it: its status, and the events it recorded (by type)."""

    message_id: str
    order_id: str
    kind: str
    source: str
    status: str
    events: tuple[str, ...] = ()


def notices_verdict(
    *,
    sent: list[SentNotice],
    inbox: list[InboxRow],
    recorded: Counter[tuple[str, str]],
    lost_tasks: Counter[str],
    staff_fulfilled: set[str],
    errors: list[str],
) -> Check:
    """Every notice sent was recorded once and applied once.

    `recorded` counts the stored `order.fulfilled`, `order.delivered` and `order.shipment_lost`
    events by (order id, type); `lost_tasks` the staff tasks of lost shipments by order id;
    `staff_fulfilled` names the orders the staff fulfilled themselves before the distributor's
    notice. Per notice: an inbox row with its message id (none: lost), the kind, order and way it
    was sent with, not parked. Per order: exactly one `order.fulfilled`, one `order.delivered`
    per "delivered" notice and one `order.shipment_lost` (and one staff task) per "lost" notice
    (more: applied twice; fewer: not applied), and the inbox's rows name each of those events
    once (the staff's own fulfilment aside). A "shipped" notice overtaken by a "delivered" or
    "lost" one that fulfilled the order first has nothing to do; that is applied once too.
    """
    rows: dict[str, InboxRow] = {}
    recorded_twice = []
    for row in inbox:
        if row.message_id in rows:
            recorded_twice.append(row.message_id)
        rows[row.message_id] = row
    by_id = {notice.message_id: notice for notice in sent}
    lost = [n.message_id for n in sent if n.message_id not in rows]
    parked = [f"{r.message_id}: {r.status}" for r in rows.values() if r.message_id in by_id and r.status == "parked"]
    misread = [
        f"{n.message_id}: sent {n.kind} of {n.order_id} by {n.way}, recorded {r.kind} of {r.order_id} by {r.source}"
        for n in sent
        if (r := rows.get(n.message_id)) is not None and (r.kind, r.order_id, r.source) != (n.kind, n.order_id, n.way)
    ]
    strangers = [message_id for message_id in rows if message_id not in by_id]

    kinds_by_order: dict[str, Counter[str]] = defaultdict(Counter)
    for notice in sent:
        kinds_by_order[notice.order_id][notice.kind] += 1
    in_inbox: Counter[tuple[str, str]] = Counter()
    for row in rows.values():
        for event_type in row.events:
            in_inbox[(row.order_id, event_type)] += 1
    doubled, unapplied = [], []
    for order_id, kinds in kinds_by_order.items():
        expected = {
            "order.fulfilled": 1,
            "order.delivered": kinds["delivered"],
            "order.shipment_lost": kinds["lost"],
        }
        for event_type, count in expected.items():
            by_staff = 1 if event_type == "order.fulfilled" and order_id in staff_fulfilled else 0
            by_notices = count - by_staff
            got, named = recorded[(order_id, event_type)], in_inbox[(order_id, event_type)]
            if got > count or named > by_notices:
                doubled.append(f"{order_id}: {event_type} recorded {got}, by notices {named}, expected {count}")
            elif got < count or named < by_notices:
                unapplied.append(f"{order_id}: {event_type} recorded {got}, by notices {named}, expected {count}")
        if lost_tasks[order_id] != kinds["lost"]:
            (doubled if lost_tasks[order_id] > kinds["lost"] else unapplied).append(
                f"{order_id}: {lost_tasks[order_id]} lost-shipment tasks for {kinds['lost']} lost notices"
            )

    ways = Counter(n.way for n in sent)
    statuses = Counter(rows[n.message_id].status for n in sent if n.message_id in rows)
    ok = not (errors or recorded_twice or lost or parked or misread or strangers or doubled or unapplied)
    findings = {
        "not recorded": lost,
        "recorded twice": recorded_twice,
        "parked": parked,
        "misread": misread,
        "not sent": strangers,
        "applied twice": doubled,
        "not applied": unapplied,
        "distributor errors": errors,
    }
    detail = (
        f"{len(sent)} notices (webhook {ways['webhook']}, broker {ways['broker']}; sent twice on purpose"
        f" {sum(1 for n in sent if n.copies > 1)}): applied {statuses['applied']}, nothing to do (overtaken)"
        f" {statuses['nothing_to_do']}"
    )
    for name, found in findings.items():
        if found:
            detail += f"; {name} {len(found)}: {found[:3]}"
    return Check("every distributor notice applied once", ok, detail)


def notice_check(tenant: Tenant, distributor: Distributor, staff_fulfilled: set[str]) -> Check:
    """`notices_verdict` over the inbox, the stored events and the lost-shipment tasks."""
    inbox = [
        InboxRow(message_id, str(order_id), kind, source, status, tuple(events))
        for message_id, order_id, kind, source, status, events in InboxMessage.objects.filter(
            tenant=tenant
        ).values_list("message_id", "order_id", "kind", "source", "status", "events")
    ]
    # A message that named no bookstore it could be told apart from is recorded without one.
    inbox += [
        InboxRow(message_id, "", "", source, status)
        for message_id, source, status in InboxMessage.objects.filter(tenant=None).values_list(
            "message_id", "source", "status"
        )
    ]
    recorded = Counter(
        (str(order_id), event_type)
        for order_id, event_type in StoredEvent.objects.filter(
            tenant_id=tenant.id, type__in=NOTICE_EVENTS.values()
        ).values_list("aggregate_id", "type")
    )
    lost_tasks = Counter(str(o) for o in LostShipment.objects.filter(tenant=tenant).values_list("order_id", flat=True))
    return notices_verdict(
        sent=list(distributor.sent),
        inbox=inbox,
        recorded=recorded,
        lost_tasks=lost_tasks,
        staff_fulfilled=staff_fulfilled,
        errors=list(distributor.errors),
    )


def notices_unrecorded(tenant: Tenant, sent: list[SentNotice]) -> int:
    """How many of the notices sent the inbox has not recorded yet (the drain waits for none)."""
    message_ids = {notice.message_id for notice in sent}
    recorded = InboxMessage.objects.filter(tenant=tenant, message_id__in=message_ids).count()
    return len(message_ids) - recorded


def notice_figures(sent: list[SentNotice], tenant: Tenant) -> dict:
    """What the distributor sent, each way, and what the inbox made of it."""
    rows = dict(
        InboxMessage.objects.filter(tenant=tenant, message_id__in=[n.message_id for n in sent]).values_list(
            "message_id", "status"
        )
    )
    statuses = Counter(rows.get(n.message_id, "not recorded") for n in sent)
    return {
        "sent": len(sent),
        "by_way": dict(Counter(n.way for n in sent)),
        "by_kind": dict(Counter(n.kind for n in sent)),
        "sent_twice_on_purpose": sum(1 for n in sent if n.copies > 1),
        "copies_sent": sum(n.copies for n in sent),
        "applied": statuses["applied"],
        "nothing_to_do": statuses["nothing_to_do"],
        "parked": statuses["parked"],
        "not_recorded": statuses["not recorded"],
    }


def _dashboard_check(tenant: Tenant, base_url: str, staff_token: str) -> tuple[str, bool, str]:
    """`GET dashboard/` against the same figures computed in SQL from the orders tables."""
    answer = requests.get(
        f"{base_url}/api/v1/dashboard/", headers={"Authorization": f"Token {staff_token}"}, timeout=30
    ).json()
    zone = ZoneInfo(tenant.timezone)
    now = timezone.now().astimezone(zone)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    month = Order.objects.filter(tenant=tenant, created_at__gte=month_start)
    paid = month.filter(status__in=PAID)
    revenue = paid.aggregate(s=Sum("total_amount"))["s"] or Decimal("0")
    paid_count = paid.count()
    expected = {
        "orders_this_month": month.count(),
        "revenue_this_month": f"{revenue:.2f}",
        "pending_fulfillment": Order.objects.filter(tenant=tenant, status="confirmed").count(),
        "cancelled_this_month": month.filter(status="cancelled").count(),
        "average_order_value": f"{(revenue / paid_count) if paid_count else Decimal(0):.2f}",
    }
    got = {key: answer.get(key) for key in expected}
    days: dict[str, list] = defaultdict(lambda: [0, Decimal("0")])
    for created, status, total in month.values_list("created_at", "status", "total_amount"):
        day = days[created.astimezone(zone).date().isoformat()]
        day[0] += 1
        if status in PAID:
            day[1] += total
    expected_days = {d: (n, f"{r:.2f}") for d, (n, r) in days.items()}
    got_days = {d["date"]: (d["orders"], d["revenue"]) for d in answer.get("daily_revenue", []) if d["orders"]}
    ok = got == expected and got_days == expected_days
    return "dashboard equals SQL over the orders", ok, f"api {got} sql {expected}" if not ok else f"{got}"


def slowest_settle(since: float) -> tuple[float, str]:
    """Seconds from `since` (the end of the last fault) until the last effect of any order
    completed, and what that last effect was."""
    candidates = []
    delivery = Delivery.objects.exclude(completed_at=None).order_by("-completed_at").first()
    if delivery is not None:
        candidates.append(
            (delivery.completed_at, f"{delivery.handler} ({delivery.event_type}, {delivery.attempts} attempts)")
        )
    webhook = WebhookDelivery.objects.exclude(completed_at=None).order_by("-completed_at").first()
    if webhook is not None:
        candidates.append((webhook.completed_at, f"webhook {webhook.event_type} ({webhook.attempts} attempts)"))
    mail = EmailMessage.objects.exclude(sent_at=None).order_by("-sent_at").first()
    if mail is not None:
        candidates.append((mail.sent_at, f"e-mail {mail.template} ({mail.attempts} attempts)"))
    order = Order.objects.order_by("-updated_at").first()
    if order is not None:
        candidates.append((order.updated_at, f"order {order.status}"))
    if not candidates:
        return 0.0, ""
    moment, what = max(candidates, key=lambda c: c[0])
    return max(0.0, moment.timestamp() - since), what


# An order is settled once nothing it caused still moves: it is final, and every handler delivery,
# webhook delivery and e-mail of every event about it is done.
SETTLE_BOUND = 60.0


def order_settle_times(tenant: Tenant) -> dict[str, tuple[float, float]]:
    """Each order's (placed, settled) moments as Unix times: placed is its row's creation, settled
    the last completion of anything it caused (its own last change, the handler deliveries, webhook
    deliveries and e-mails of every event whose payload names it or whose aggregate it is)."""
    from django.db import connection

    events, deliveries = StoredEvent._meta.db_table, Delivery._meta.db_table
    webhooks, mails = WebhookDelivery._meta.db_table, EmailMessage._meta.db_table
    sql = f"""
        WITH ev AS (
            SELECT id, event_id, COALESCE(payload->>'order_id', aggregate_id::text) AS order_id FROM {events}
        ), done AS (
            SELECT ev.order_id, d.completed_at AS at FROM ev JOIN {deliveries} d ON d.stored_event_id = ev.id
            UNION ALL
            SELECT ev.order_id, w.completed_at FROM ev JOIN {webhooks} w ON w.event_id = ev.event_id
            UNION ALL
            SELECT ev.order_id, m.sent_at FROM ev JOIN {mails} m ON m.event_id = ev.event_id
        )
        SELECT o.id::text, o.created_at, GREATEST(o.updated_at, MAX(done.at))
        FROM {Order._meta.db_table} o LEFT JOIN done ON done.order_id = o.id::text
        WHERE o.tenant_id = %s GROUP BY o.id, o.created_at, o.updated_at
    """  # noqa: S608  (table names from the models, the tenant as a parameter)
    with connection.cursor() as cursor:
        cursor.execute(sql, [tenant.pk])
        return {order_id: (placed.timestamp(), settled.timestamp()) for order_id, placed, settled in cursor.fetchall()}


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile `q` (0..100) of `values` (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def settle_table(faults, settles: dict[str, tuple[float, float]], kinds) -> list[dict]:
    """Per fault kind: the orders each fault touched, and p50 / p99 / max seconds from the fault's
    end to their settling.

    An order is touched by a fault when it was in flight during it: placed before the fault was
    over and settled after it began. Its settle time for that fault is from the fault's end (the
    kill, Redis back, PostgreSQL back) to its settling, 0 when it settled during the fault. An
    order in flight across several faults counts once for each."""
    rows = []
    for kind in kinds:
        of_kind = [f for f in faults if f.kind == kind]
        times: list[float] = []
        slowest = (0.0, "")
        for fault in of_kind:
            for order_id, (placed, settled) in settles.items():
                if placed <= fault.end and settled >= fault.start:
                    seconds = max(0.0, settled - fault.end)
                    times.append(seconds)
                    if seconds >= slowest[0]:
                        slowest = (seconds, f"order {order_id} after {fault.what}")
        rows.append(
            {
                "kind": kind,
                "faults": len(of_kind),
                "orders_touched": len(times),
                "p50": round(percentile(times, 50), 1),
                "p99": round(percentile(times, 99), 1),
                "max": round(max(times, default=0.0), 1),
                "slowest": slowest[1],
            }
        )
    return rows


def order_timeline(order_id: str, since: float) -> list[str]:
    """What became of one order, each line seconds after `since` (negative: before): its events
    as recorded, and when each handler delivery, webhook delivery (with its attempts) and e-mail
    was done. What the slowest order waited on."""

    def at(moment) -> str:
        return "open" if moment is None else f"{moment.timestamp() - since:+.1f}"

    lines = []
    events = StoredEvent.objects.filter(payload__order_id=order_id) | StoredEvent.objects.filter(aggregate_id=order_id)
    for event in events.order_by("recorded_at"):
        lines.append(f"{at(event.recorded_at)} {event.type} recorded (#{event.position})")
        for handler, attempts, done in Delivery.objects.filter(stored_event_id=event.id).values_list(
            "handler", "attempts", "completed_at"
        ):
            lines.append(f"  {at(done)} {handler} done, {attempts} attempts")
        for webhook in WebhookDelivery.objects.filter(event_id=event.event_id):
            tries = ", ".join(
                f"{at(a.started_at)}: {a.status_code or a.error[:40]}" for a in webhook.attempt_log.order_by("number")
            )
            lines.append(f"  {at(webhook.completed_at)} webhook done, {webhook.attempts} attempts [{tries}]")
        for template, attempts, sent in EmailMessage.objects.filter(event_id=event.event_id).values_list(
            "template", "attempts", "sent_at"
        ):
            lines.append(f"  {at(sent)} e-mail {template} sent, {attempts} attempts")
    return lines
