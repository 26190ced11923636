"""Writes of the payments module; the only place that publishes payment events.

The payment row is the aggregate: each service locks it before it talks to the gateway and
publishes, so a capture and a cancellation of one order never interleave, and a redelivered
event finds the payment already settled. Gateway calls carry the handled event's id as the
idempotency key, so even a retry after a lost answer or a crash never charges twice.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from core.errors import ApplicationError
from domain_events.bus import event_bus
from domain_events.events import PaymentCaptured, PaymentFailed, PaymentRefunded
from payments.gateways import PaymentGateway, get_gateway
from payments.models import Payment

logger = logging.getLogger(__name__)

MAX_REASON_LENGTH = Payment._meta.get_field("failure_reason").max_length


class PaymentNotRegistered(ApplicationError):
    """The order's payment is not registered yet; the event that needs it is retried later."""


def _locked_payment(*, tenant_id: UUID, order_id: UUID) -> Payment | None:
    return Payment.objects.select_for_update(no_key=True).filter(tenant_id=tenant_id, order_id=order_id).first()


def payment_register_for_order(
    *, tenant_id: UUID, order_id: UUID, amount: Decimal, currency: str, payment_token: str
) -> Payment:
    """Register the pending payment of a placed order.

    Idempotent: an order has one payment, and an existing one (a redelivery, or the tombstone of
    an order cancelled before this ran) is returned unchanged.
    """
    payment, created = Payment.objects.get_or_create(
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


@transaction.atomic
def payment_capture_for_order(
    *, tenant_id: UUID, order_id: UUID, idempotency_key: str, gateway: PaymentGateway | None = None
) -> Payment:
    """Capture the pending payment of an order whose stock is reserved.

    Publishes `PaymentCaptured`, or `PaymentFailed` when the card is declined. A payment that is
    no longer pending (captured already, declined, voided by a cancellation) is left alone.
    Raises `PaymentNotRegistered` if the order's payment is not registered yet, and lets
    `GatewayTimeout` through: both are retried, with the same `idempotency_key`.
    """
    payment = _locked_payment(tenant_id=tenant_id, order_id=order_id)
    if payment is None:
        raise PaymentNotRegistered(f"no payment is registered for order {order_id} yet")
    if payment.status != Payment.Status.PENDING:
        logger.info("payment of order %s is %s; nothing to capture", order_id, payment.status)
        return payment

    gateway = gateway or get_gateway()
    result = gateway.capture(
        amount=payment.amount,
        currency=payment.currency,
        token=payment.payment_token,
        idempotency_key=idempotency_key,
    )
    payment.provider_reference = result.reference
    if result.declined:
        payment.status = Payment.Status.DECLINED
        payment.failure_reason = (result.message or "declined")[:MAX_REASON_LENGTH]
        payment.save(update_fields=["status", "provider_reference", "failure_reason", "updated_at"])
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

    payment.status = Payment.Status.CAPTURED
    payment.captured_at = timezone.now()
    payment.save(update_fields=["status", "provider_reference", "captured_at", "updated_at"])
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


@transaction.atomic
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
    `GatewayTimeout` goes through to be retried with the same `idempotency_key`.
    """
    payment = _locked_payment(tenant_id=tenant_id, order_id=order_id)
    if payment is None:
        payment, created = Payment.objects.get_or_create(
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
        payment.status = Payment.Status.VOIDED
        payment.save(update_fields=["status", "updated_at"])
        return payment
    if payment.status != Payment.Status.CAPTURED:
        logger.info("payment of cancelled order %s is %s; nothing to give back", order_id, payment.status)
        return payment

    gateway = gateway or get_gateway()
    result = gateway.refund(
        reference=payment.provider_reference,
        amount=payment.amount,
        currency=payment.currency,
        idempotency_key=idempotency_key,
    )
    if result.declined:
        payment.failure_reason = f"refund declined: {result.message or 'no reason given'}"[:MAX_REASON_LENGTH]
        payment.save(update_fields=["failure_reason", "updated_at"])
        logger.error("refund of order %s was declined: %s", order_id, result.message)
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
