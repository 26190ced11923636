"""The built-in simulated payment provider: no network; its ledger is `payments.models.SimulatedCharge`."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import TypeVar

from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import Sum

from payments.gateways.base import GatewayError, GatewayResult, GatewayStatus, GatewayTimeout
from payments.models import SimulatedCharge

T = TypeVar("T")


def _configured_lost_responses() -> int:
    value = getattr(settings, "PAYMENT_GATEWAY_LOST_RESPONSES", None)
    if value is None:
        value = os.environ.get("PAYMENT_GATEWAY_LOST_RESPONSES", "0")
    return int(value)


def _on_own_connection(fn: Callable[[], T]) -> T:
    """Run `fn` on a database connection of its own, so what it writes is committed whatever
    becomes of the caller's transaction, as a remote provider's records would be.

    SQLite (the zero-setup default) has one writer, and the caller may hold the write lock: there
    the ledger shares the caller's transaction, and a lost response loses the charge with it.
    """
    if connection.vendor == "sqlite":
        return fn()

    def run() -> T:
        try:
            return fn()
        finally:
            connections.close_all()  # this thread's connections only

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="simulated-gateway") as pool:
        return pool.submit(run).result()


class SimulatedGateway:
    """A provider that needs no network, for development, demos and tests.

    - `tok_visa` is captured; `tok_chargeDeclined` is declined ("card declined"); any other token
      is declined ("unknown token"); `tok_timeout` never answers (`GatewayTimeout`, nothing charged).
    - Refunds succeed for a captured charge, up to what is left of its amount.
    - Each idempotency key is charged once: its `SimulatedCharge` row holds the result, and every
      later request with the key gets that result back.
    - `delay` seconds of latency per request (`settings.PAYMENT_GATEWAY_DELAY`).
    - `lost_responses` (`settings.PAYMENT_GATEWAY_LOST_RESPONSES`, or the environment variable of
      that name): the first N requests of each key are performed, but their answer is lost and the
      caller sees `GatewayTimeout`.
    """

    CAPTURES = "tok_visa"
    DECLINES = "tok_chargeDeclined"
    TIMES_OUT = "tok_timeout"

    def __init__(self, *, delay: float | None = None, lost_responses: int | None = None) -> None:
        self.delay = float(getattr(settings, "PAYMENT_GATEWAY_DELAY", 0.0) if delay is None else delay)
        self.lost_responses = _configured_lost_responses() if lost_responses is None else lost_responses

    def capture(self, *, amount: Decimal, currency: str, token: str, idempotency_key: str) -> GatewayResult:
        self._wait()
        if token == self.TIMES_OUT:
            raise GatewayTimeout("the simulated provider did not answer (tok_timeout)")

        def decide() -> tuple[SimulatedCharge.Result, str]:
            if amount <= 0:
                return SimulatedCharge.Result.DECLINED, "invalid amount"
            if token == self.CAPTURES:
                return SimulatedCharge.Result.CAPTURED, ""
            if token == self.DECLINES:
                return SimulatedCharge.Result.DECLINED, "card declined"
            return SimulatedCharge.Result.DECLINED, "unknown token"

        charge = _on_own_connection(
            lambda: self._record(
                idempotency_key=idempotency_key,
                kind=SimulatedCharge.Kind.CAPTURE,
                amount=amount,
                currency=currency,
                token=token,
                decide=decide,
            )
        )
        return self._answer(charge)

    def refund(self, *, reference: str, amount: Decimal, currency: str, idempotency_key: str) -> GatewayResult:
        self._wait()

        def decide() -> tuple[SimulatedCharge.Result, str]:
            captured = (
                SimulatedCharge.objects.select_for_update()
                .filter(reference=reference, kind=SimulatedCharge.Kind.CAPTURE, result=SimulatedCharge.Result.CAPTURED)
                .first()
            )
            if captured is None:
                return SimulatedCharge.Result.DECLINED, "unknown charge"
            if captured.currency != currency:
                return SimulatedCharge.Result.DECLINED, "currency does not match the charge"
            refunded = SimulatedCharge.objects.filter(
                refunded_reference=reference, result=SimulatedCharge.Result.REFUNDED
            ).aggregate(total=Sum("amount"))["total"] or Decimal("0")
            if amount <= 0 or refunded + amount > captured.amount:
                return SimulatedCharge.Result.DECLINED, "amount exceeds what is left to refund"
            return SimulatedCharge.Result.REFUNDED, ""

        charge = _on_own_connection(
            lambda: self._record(
                idempotency_key=idempotency_key,
                kind=SimulatedCharge.Kind.REFUND,
                amount=amount,
                currency=currency,
                refunded_reference=reference,
                decide=decide,
            )
        )
        return self._answer(charge)

    # --- internals ----------------------------------------------------------------------------

    def _wait(self) -> None:
        if self.delay > 0:
            time.sleep(self.delay)

    @staticmethod
    def _record(
        *,
        idempotency_key: str,
        kind: SimulatedCharge.Kind,
        amount: Decimal,
        currency: str,
        decide: Callable[[], tuple[SimulatedCharge.Result, str]],
        token: str = "",
        refunded_reference: str = "",
    ) -> SimulatedCharge:
        """The charge for `idempotency_key`, performed now if this is the key's first request."""
        with transaction.atomic():
            charge = SimulatedCharge.objects.select_for_update().filter(idempotency_key=idempotency_key).first()
            if charge is None:
                result, message = decide()
                prefix = "sim_ch" if kind == SimulatedCharge.Kind.CAPTURE else "sim_re"
                # A concurrent first request with the same key wins the insert; this one then
                # waits for it and replays its result.
                SimulatedCharge.objects.bulk_create(
                    [
                        SimulatedCharge(
                            idempotency_key=idempotency_key,
                            kind=kind,
                            amount=amount,
                            currency=currency,
                            token=token,
                            refunded_reference=refunded_reference,
                            result=result,
                            message=message,
                            reference=f"{prefix}_{uuid.uuid4().hex[:24]}",
                        )
                    ],
                    ignore_conflicts=True,
                )
                charge = SimulatedCharge.objects.select_for_update().get(idempotency_key=idempotency_key)
            if (charge.kind, charge.amount, charge.currency) != (kind, amount, currency):
                raise GatewayError(f"idempotency key {idempotency_key!r} was used for another request")
            charge.requests += 1
            charge.save(update_fields=["requests"])
        return charge

    def _answer(self, charge: SimulatedCharge) -> GatewayResult:
        if charge.requests <= self.lost_responses:
            raise GatewayTimeout(f"the simulated provider's answer to request {charge.requests} was lost")
        return GatewayResult(status=GatewayStatus(charge.result), reference=charge.reference, message=charge.message)
