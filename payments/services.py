"""Writes of the payments module; the only place that publishes payment events.

A capture or a refund talks to the provider in three steps, and no transaction is open during the
call, so no row stays locked while the provider answers:
1. claim (a short transaction, for a capture one statement; the payment row locked): is there
   anything to do, and with which idempotency key. The key is the handled event's id, written on
   the payment (`capture_key`, `refund_key`) the first time; every later try, a redelivery or
   another event alike, sends the key already written;
2. the provider call, with that key, which the provider answers with the result of its first
   request with the key instead of charging again;
3. record (a short transaction, the payment row locked again): apply the result unless it is
   applied already, and publish what follows from it.
A process killed between 2 and 3 leaves the payment as it was; the retry (its delivery is
leased, and run again when the lease runs out) makes the same call with the same key, gets the
first result back and records it once. A cancellation that finds a capture claimed but not yet
recorded waits for its outcome (it is retried), since only that outcome says whether there is
money to give back.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from uuid import UUID

from django.db import connection, transaction
from django.utils import timezone

from core.db import get_or_insert
from core.errors import ApplicationError
from domain_events.bus import event_bus
from domain_events.events import PaymentCaptured, PaymentFailed, PaymentRefunded
from payments import sql
from payments.gateways import GatewayResult, PaymentGateway, get_gateway
from payments.models import Payment

logger = logging.getLogger(__name__)

MAX_REASON_LENGTH = Payment._meta.get_field("failure_reason").max_length


class PaymentNotRegistered(ApplicationError):
    """The order's payment is not registered yet; the event that needs it is retried later."""


class PaymentCaptureUnsettled(ApplicationError):
    """A capture of the payment went to the provider and its outcome is not recorded yet: the
    cancellation that met it is retried on its schedule until the capture's retry records it."""


def _locked_payment(*, tenant_id: UUID, order_id: UUID) -> Payment | None:
    return Payment.objects.select_for_update(no_key=True).filter(tenant_id=tenant_id, order_id=order_id).first()


def payment_register_for_order(
    *, tenant_id: UUID, order_id: UUID, amount: Decimal, currency: str, payment_token: str
) -> Payment:
    """Register the pending payment of a placed order.

    Idempotent: an order has one payment, and an existing one (a redelivery, or the tombstone of
    an order cancelled before this ran) is returned unchanged.
    """
    payment, created = get_or_insert(
        Payment,
        order_id=order_id,
        defaults={
            "tenant_id": tenant_id,
            "amount": amount,
            "currency": currency,
            "payment_token": payment_token,
            "status": Payment.Status.PENDING,
        },
    )
    if not created:
        logger.info("payment of order %s already registered (%s)", order_id, payment.status)
    return payment


def payment_capture_for_order(
    *, tenant_id: UUID, order_id: UUID, idempotency_key: str, gateway: PaymentGateway | None = None
) -> Payment:
    """Capture the pending payment of an order whose stock is reserved.

    Publishes `PaymentCaptured`, or `PaymentFailed` when the card is declined. A payment that is
    no longer pending (captured already, declined, voided by a cancellation) is left alone.
    `idempotency_key` is used only if no capture of the payment was claimed before; otherwise the
    claimed key is sent again. Holds no transaction open during the gateway call. Raises
    `PaymentNotRegistered` if the order's payment is not registered yet, and lets `GatewayTimeout`
    through: both are retried, and the retry sends the same key.
    """
    payment = _capture_claim(tenant_id=tenant_id, order_id=order_id, idempotency_key=idempotency_key)
    if payment.status != Payment.Status.PENDING:
        logger.info("payment of order %s is %s; nothing to capture", order_id, payment.status)
        return payment
    result = (gateway or get_gateway()).capture(
        amount=payment.amount,
        currency=payment.currency,
        token=payment.payment_token,
        idempotency_key=payment.capture_key,
    )
    return _capture_record(payment=payment, result=result)


def _capture_claim(*, tenant_id: UUID, order_id: UUID, idempotency_key: str) -> Payment:
    """The order's payment as it is now, its capture key written first if it is pending and has
    none: one statement, whose row lock orders it with every other claim, record and cancellation."""
    if connection.vendor != "postgresql":
        return _capture_claim_locked(tenant_id=tenant_id, order_id=order_id, idempotency_key=idempotency_key)
    now = timezone.now()
    pending = Payment.Status.PENDING
    params = [tenant_id, pending, idempotency_key, tenant_id, pending, now, order_id]
    claimed = [p for p in Payment.objects.raw(sql.CLAIM_CAPTURE, params) if str(p.tenant_id) == str(tenant_id)]
    if not claimed:
        raise PaymentNotRegistered(f"no payment is registered for order {order_id} yet")
    return claimed[0]


@transaction.atomic
def _capture_claim_locked(*, tenant_id: UUID, order_id: UUID, idempotency_key: str) -> Payment:
    """The same claim with the ORM (SQLite): the row read under its lock, then the key written."""
    payment = _locked_payment(tenant_id=tenant_id, order_id=order_id)
    if payment is None:
        raise PaymentNotRegistered(f"no payment is registered for order {order_id} yet")
    if payment.status == Payment.Status.PENDING and not payment.capture_key:
        payment.capture_key = idempotency_key
        payment.save(update_fields=["capture_key", "updated_at"])
    return payment


@transaction.atomic
def _capture_record(*, payment: Payment, result: GatewayResult) -> Payment:
    """Apply the provider's answer to the claimed `payment` unless another try of the same capture
    recorded it first, and publish what follows. The event's amounts are the claim's: a payment's
    amount and currency never change once registered."""
    now = timezone.now()
    if result.declined:
        changes = {
            "status": Payment.Status.DECLINED,
            "provider_reference": result.reference,
            "failure_reason": (result.message or "declined")[:MAX_REASON_LENGTH],
        }
    else:
        changes = {"status": Payment.Status.CAPTURED, "provider_reference": result.reference, "captured_at": now}
    if not Payment.objects.filter(pk=payment.pk, status=Payment.Status.PENDING).update(**changes, updated_at=now):
        recorded = Payment.objects.get(pk=payment.pk)
        logger.info(
            "capture %s of order %s is recorded already (%s)", payment.capture_key, payment.order_id, recorded.status
        )
        return recorded
    for name, value in {**changes, "updated_at": now}.items():
        setattr(payment, name, value)
    if result.declined:
        event_bus.publish(
            PaymentFailed(
                tenant_id=payment.tenant_id,
                order_id=payment.order_id,
                payment_id=payment.id,
                amount=payment.amount,
                currency=payment.currency,
                reason=payment.failure_reason,
            )
        )
        return payment
    event_bus.publish(
        PaymentCaptured(
            tenant_id=payment.tenant_id,
            order_id=payment.order_id,
            payment_id=payment.id,
            amount=payment.amount,
            currency=payment.currency,
            provider_reference=payment.provider_reference,
        )
    )
    return payment


def payment_void_or_refund_for_cancelled_order(
    *,
    tenant_id: UUID,
    order_id: UUID,
    amount: Decimal,
    currency: str,
    idempotency_key: str,
    gateway: PaymentGateway | None = None,
) -> Payment:
    """Settle the payment of a cancelled order.

    A pending payment is voided; with no payment registered yet, a voided tombstone is left so
    that a late registration or capture does nothing. A captured payment is refunded in full and
    `PaymentRefunded` published; if the provider refuses the refund, the payment stays captured
    with the reason recorded for staff. Declined, voided and refunded payments are left alone.
    Holds no transaction open during the gateway call. Raises `PaymentCaptureUnsettled` while a
    capture's outcome is not recorded, and lets `GatewayTimeout` through: both are retried, the
    refund with the key it was first sent with.
    """
    payment = _settle_claim(
        tenant_id=tenant_id, order_id=order_id, amount=amount, currency=currency, idempotency_key=idempotency_key
    )
    if payment.status != Payment.Status.CAPTURED:
        return payment
    result = (gateway or get_gateway()).refund(
        reference=payment.provider_reference,
        amount=payment.amount,
        currency=payment.currency,
        idempotency_key=payment.refund_key,
    )
    return _refund_record(payment_id=payment.pk, refund_key=payment.refund_key, result=result)


@transaction.atomic
def _settle_claim(*, tenant_id: UUID, order_id: UUID, amount: Decimal, currency: str, idempotency_key: str) -> Payment:
    """Void what can be voided here; a captured payment comes back with its `refund_key` claimed."""
    payment = _locked_payment(tenant_id=tenant_id, order_id=order_id)
    if payment is None:
        payment, created = get_or_insert(
            Payment,
            order_id=order_id,
            defaults={"tenant_id": tenant_id, "amount": amount, "currency": currency, "status": Payment.Status.VOIDED},
        )
        if created:
            return payment
        # Registered meanwhile: settle it like any other.
        payment = _locked_payment(tenant_id=tenant_id, order_id=order_id)
        if payment is None:
            raise ApplicationError(f"order {order_id} has a payment of another tenant")

    if payment.status == Payment.Status.PENDING:
        if payment.capture_key:
            # The provider may have charged the card: voiding now could keep the customer's money.
            raise PaymentCaptureUnsettled(
                f"the capture of order {order_id} is not recorded yet; the cancellation waits for it"
            )
        payment.status = Payment.Status.VOIDED
        payment.save(update_fields=["status", "updated_at"])
        return payment
    if payment.status != Payment.Status.CAPTURED:
        logger.info("payment of cancelled order %s is %s; nothing to give back", order_id, payment.status)
        return payment
    if not payment.refund_key:
        payment.refund_key = idempotency_key
        payment.save(update_fields=["refund_key", "updated_at"])
    return payment


@transaction.atomic
def _refund_record(*, payment_id: UUID, refund_key: str, result: GatewayResult) -> Payment:
    payment = Payment.objects.select_for_update(no_key=True).get(pk=payment_id)
    if payment.status != Payment.Status.CAPTURED:
        logger.info("refund %s of order %s is recorded already (%s)", refund_key, payment.order_id, payment.status)
        return payment
    if result.declined:
        payment.failure_reason = f"refund declined: {result.message or 'no reason given'}"[:MAX_REASON_LENGTH]
        payment.save(update_fields=["failure_reason", "updated_at"])
        logger.error("refund of order %s was declined: %s", payment.order_id, result.message)
        return payment

    payment.status = Payment.Status.REFUNDED
    payment.refund_reference = result.reference
    payment.refunded_at = timezone.now()
    payment.save(update_fields=["status", "refund_reference", "refunded_at", "updated_at"])
    event_bus.publish(
        PaymentRefunded(
            tenant_id=payment.tenant_id,
            order_id=payment.order_id,
            payment_id=payment.id,
            amount=payment.amount,
            currency=payment.currency,
            provider_reference=payment.refund_reference,
        )
    )
    return payment
