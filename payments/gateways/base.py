"""The one interface payment providers plug in behind.

`settings.PAYMENT_GATEWAY` names the gateway class by dotted path; `get_gateway()` builds it.
A gateway answers every request with a `GatewayResult`, or raises `GatewayTimeout` when it cannot
tell what happened: the caller retries later with the same idempotency key, and the provider
answers that retry with the result of the first request instead of charging again.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Protocol, runtime_checkable

from django.conf import settings
from django.utils.module_loading import import_string


class GatewayError(Exception):
    """The gateway could not handle a request (misuse, misconfiguration)."""


class GatewayTimeout(GatewayError):
    """No answer in time: the request may or may not have been performed.

    Retryable: the same request with the same idempotency key is safe to send again.
    """


class GatewayStatus(StrEnum):
    CAPTURED = "captured"
    REFUNDED = "refunded"
    DECLINED = "declined"


@dataclass(frozen=True, kw_only=True)
class GatewayResult:
    """The provider's answer: `status`, its `reference` for the charge, and a human `message`."""

    status: GatewayStatus
    reference: str
    message: str = ""

    @property
    def declined(self) -> bool:
        return self.status is GatewayStatus.DECLINED


@runtime_checkable
class PaymentGateway(Protocol):
    """What ShelfWise asks of a payment provider. Both calls are idempotent per `idempotency_key`."""

    def capture(self, *, amount: Decimal, currency: str, token: str, idempotency_key: str) -> GatewayResult:
        """Charge `amount` to the card behind `token`: status `captured` or `declined`."""
        ...

    def refund(self, *, reference: str, amount: Decimal, currency: str, idempotency_key: str) -> GatewayResult:
        """Give back `amount` of the capture `reference`: status `refunded` or `declined`."""
        ...


def get_gateway() -> PaymentGateway:
    """The configured gateway (`settings.PAYMENT_GATEWAY`, a dotted path to its class)."""
    path = getattr(settings, "PAYMENT_GATEWAY", "payments.gateways.SimulatedGateway")
    return import_string(path)()
