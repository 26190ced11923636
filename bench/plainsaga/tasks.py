"""The plain saga: what a competent Django team writes for this order flow without an event platform.

`POST bench/saga-orders/` (bench/plainsaga/api.py) saves the order and its lines and, on commit,
queues `place_saga`. That one task reserves the stock (`select_for_update` on the products),
registers and captures the payment through the same payment simulator, confirms the order, adds to
the same dashboard counters (one upsert) and appends one hash-chained audit row per state change
(placed, reserved, captured, confirmed). After its commit it queues one task for the e-mail (the same
template and backend) and one task per webhook (one per state change, signed with `standardwebhooks`,
to BENCH_PLAIN_WEBHOOK_URL).

What it lacks, and what the benchmark's comparison therefore prices:

- no outbox: a task message lost between the commit and the broker (a crash, a broker outage)
  loses its side effects for good; nothing records that they are owed;
- no per-aggregate order: two tasks of one order may run at once on two workers, and its webhooks
  arrive in whatever order the workers send them;
- no dead letters: a task that keeps failing is retried a few times and then dropped, with only a
  log line to say so;
- no replay: there is no event history, so no projection can be rebuilt and no new consumer can
  catch up from the past.
"""

from __future__ import annotations

import json
import os
import uuid
import zoneinfo

import requests
from celery import shared_task
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import connection, transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.utils import timezone
from standardwebhooks import Webhook

from audit.chain import CONTENT_FIELDS, GENESIS, entry_hash
from audit.models import AuditEntry
from inventory.models import Product, Reservation, ReservationLine
from orders.models import Order
from payments.gateways import GatewayTimeout, get_gateway
from payments.models import Payment
from tenants.models import Tenant

QUEUE = "plainsaga"
# The dashboard rows of the plain saga: a generation of their own beside the product's.
GENERATION = -1
WEBHOOK_SECRET = os.environ.get("BENCH_PLAIN_WEBHOOK_SECRET", "whsec_cGxhaW4tc2FnYS1iZW5jaC1zZWNyZXQ=")
_session = requests.Session()


@shared_task(queue=QUEUE, autoretry_for=(GatewayTimeout,), retry_backoff=True, max_retries=5)
def place_saga(order_id: str, payment_token: str) -> None:
    """Reserve, capture, confirm; then hand the e-mail and the webhooks to their tasks."""
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        if order.status != Order.Status.PLACED:
            return
        lines = list(order.items.all())
        wanted = {line.sku: line.quantity for line in lines}
        products = list(
            Product.objects.select_for_update().filter(tenant_id=order.tenant_id, sku__in=wanted).order_by("id")
        )
        if len(products) != len(wanted) or any(p.on_hand - p.reserved < wanted[p.sku] for p in products):
            order.status = Order.Status.CANCELLED
            order.cancellation_reason = Order.CancellationReason.OUT_OF_STOCK
            order.save(update_fields=["status", "cancellation_reason", "updated_at"])
            return
        reservation = Reservation.objects.create(tenant_id=order.tenant_id, order_id=order.id)
        ReservationLine.objects.bulk_create(
            ReservationLine(reservation=reservation, product=p, quantity=wanted[p.sku]) for p in products
        )
        for p in products:
            Product.objects.filter(pk=p.pk).update(reserved=F("reserved") + wanted[p.sku], updated_at=timezone.now())
        payment, _ = Payment.objects.get_or_create(
            order_id=order.id,
            defaults={
                "tenant_id": order.tenant_id,
                "amount": order.total_amount,
                "currency": order.currency,
                "payment_token": payment_token,
                "capture_key": f"capture-{order.id}",
            },
        )
        changes = [("order.placed", order.created_at), ("inventory.reserved", timezone.now())]
        _audit(order, changes)

    result = get_gateway().capture(
        amount=payment.amount,
        currency=payment.currency,
        token=payment.payment_token,
        idempotency_key=payment.capture_key,
    )

    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        now = timezone.now()
        payment.provider_reference = result.reference
        if result.declined:
            payment.status = Payment.Status.DECLINED
            payment.failure_reason = (result.message or "declined")[:500]
            payment.save(update_fields=["status", "provider_reference", "failure_reason", "updated_at"])
            order.status = Order.Status.CANCELLED
            order.cancellation_reason = Order.CancellationReason.PAYMENT_DECLINED
            order.save(update_fields=["status", "cancellation_reason", "updated_at"])
            return
        payment.status = Payment.Status.CAPTURED
        payment.captured_at = now
        payment.save(update_fields=["status", "provider_reference", "captured_at", "updated_at"])
        order.status = Order.Status.CONFIRMED
        order.save(update_fields=["status", "updated_at"])
        _dashboard(order, now)
        changes += [("payment.captured", now), ("order.confirmed", now)]
        _audit(order, changes[2:])
        transaction.on_commit(lambda: send_confirmation.delay(order_id))
        if settings.BENCH_PLAIN_WEBHOOK_URL:
            for event_type, at in changes:
                transaction.on_commit(
                    lambda t=event_type, a=at: send_webhook.delay(
                        t, {"order_id": order_id, "status": order.status, "at": a.isoformat()}
                    )
                )


def _audit(order: Order, changes: list[tuple[str, object]]) -> None:
    """One hash-chained row per state change, after the tenant's last row (a lock per tenant)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"plainsaga-audit-{order.tenant_id}"])
    last = AuditEntry.objects.filter(tenant_id=order.tenant_id).order_by("-sequence").values_list("sequence", "hash")
    sequence, previous = last.first() or (0, GENESIS)
    now = timezone.now()
    entries = []
    for event_type, at in changes:
        sequence += 1
        event_id = uuid.uuid4()
        entry = AuditEntry(
            tenant_id=order.tenant_id,
            sequence=sequence,
            event_id=event_id,
            event_type=event_type,
            aggregate_id=order.id,
            actor="system",
            correlation_id=str(order.id),
            causation_id=event_id,
            payload={"status": order.status, "total_amount": str(order.total_amount)},
            occurred_at=at,
            recorded_at=now,
            position=sequence,
            previous_hash=previous,
        )
        entry.hash = previous = entry_hash(previous, {f: getattr(entry, f) for f in CONTENT_FIELDS})
        entries.append(entry)
    AuditEntry.objects.bulk_create(entries)


_DASHBOARD_UPSERT = """
INSERT INTO analytics_tenantday (generation, tenant_id, day, orders, revenue) VALUES (%s, %s, %s, 1, %s)
ON CONFLICT (generation, tenant_id, day)
DO UPDATE SET orders = analytics_tenantday.orders + 1, revenue = analytics_tenantday.revenue + EXCLUDED.revenue"""


def _dashboard(order: Order, now) -> None:
    zone = Tenant.objects.filter(pk=order.tenant_id).values_list("timezone", flat=True).first() or "UTC"
    day = now.astimezone(zoneinfo.ZoneInfo(zone)).date()
    with connection.cursor() as cursor:
        cursor.execute(_DASHBOARD_UPSERT, [GENERATION, order.tenant_id, day, order.total_amount])


@shared_task(queue=QUEUE, autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_confirmation(order_id: str) -> None:
    """The customer's confirmation e-mail: the product's template, the configured backend."""
    order = Order.objects.select_related("tenant").get(pk=order_id)
    customer = get_user_model().objects.get(pk=order.customer_id)
    if not customer.email:
        return
    items = list(order.items.all())
    context = {
        "name": customer.first_name or customer.username,
        "store": order.tenant.name,
        "short_id": str(order.id)[:8],
        "lines": [{"sku": i.sku, "title": i.title, "quantity": i.quantity, "unit_price": i.unit_price} for i in items],
        "total": order.total_amount,
        "currency": order.currency,
    }
    mail = EmailMultiAlternatives(
        subject=f"Your order {context['short_id']} is confirmed",
        body=render_to_string("notifications/order_confirmed.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[customer.email],
        connection=get_connection(timeout=settings.EMAIL_TIMEOUT),
    )
    mail.attach_alternative(render_to_string("notifications/order_confirmed.html", context), "text/html")
    mail.send()


@shared_task(queue=QUEUE, autoretry_for=(requests.RequestException,), retry_backoff=True, max_retries=5)
def send_webhook(event_type: str, data: dict) -> None:
    """One webhook, signed with `standardwebhooks`, over a kept-alive session of the worker process."""
    message_id = f"msg_{uuid.uuid4().hex}"
    now = timezone.now()
    body = json.dumps({"type": event_type, "timestamp": now.isoformat(), "data": data}, default=str)
    signature = Webhook(WEBHOOK_SECRET).sign(message_id, now, body)
    response = _session.post(
        settings.BENCH_PLAIN_WEBHOOK_URL,
        data=body,
        headers={
            "Content-Type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        },
        timeout=10,
    )
    response.raise_for_status()
