"""Simulated providers that watch their caller: tests name them in `settings.PAYMENT_GATEWAY` (or a
worker's `PAYMENT_GATEWAY` environment variable) to see what the caller holds during a call.

- `ObservingGateway` notes, at each request, whether the caller has a transaction open and whether
  another session can lock the payment rows and the payments handlers' delivery rows right then.
- `DyingGateway` also makes the request, and then kills its caller with SIGKILL before the caller
  hears the answer, once: when the file named by `PAYMENTS_DIE_AFTER_ANSWER` exists (it is removed
  first, so the retry lives). The file says whom: `process` (the calling process alone: a Celery
  pool process, whose worker gets the message back from the broker) or `group` (its whole process
  group: the Celery worker with its pool). What it observed is written next to that file first.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from decimal import Decimal
from pathlib import Path

from django.db import DatabaseError, connection, transaction

from domain_events.models import Delivery
from payments.gateways import GatewayResult, SimulatedGateway
from payments.models import Payment

DIE_AFTER_ANSWER = "PAYMENTS_DIE_AFTER_ANSWER"


def _lockable_elsewhere() -> dict[str, bool]:
    """Whether a session of its own could lock every payment row and every open delivery row of
    the payments handlers this instant (NOWAIT: a lock held by the caller fails at once)."""
    found: dict[str, bool] = {}

    def probe() -> None:
        try:
            for name, rows in (
                ("payment_rows_free", Payment.objects.all()),
                ("delivery_rows_free", Delivery.objects.filter(handler__startswith="payments.")),
            ):
                try:
                    with transaction.atomic():
                        list(rows.select_for_update(nowait=True).values_list("pk", flat=True))
                    found[name] = True
                except DatabaseError:
                    found[name] = False
        finally:
            connection.close()

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join(30)
    return found


def observe(kind: str) -> dict[str, object]:
    """What the caller holds while its request is with the provider."""
    return {"request": kind, "transaction_open": connection.in_atomic_block, **_lockable_elsewhere()}


class ObservingGateway(SimulatedGateway):
    """The simulated provider, noting in `seen` what its caller held at each request."""

    seen: list[dict[str, object]] = []

    def capture(self, *, amount: Decimal, currency: str, token: str, idempotency_key: str) -> GatewayResult:
        self.seen.append(observe("capture"))
        return super().capture(amount=amount, currency=currency, token=token, idempotency_key=idempotency_key)

    def refund(self, *, reference: str, amount: Decimal, currency: str, idempotency_key: str) -> GatewayResult:
        self.seen.append(observe("refund"))
        return super().refund(reference=reference, amount=amount, currency=currency, idempotency_key=idempotency_key)


class DyingGateway(SimulatedGateway):
    """The simulated provider, whose caller's process dies once right after a capture is made."""

    def capture(self, *, amount: Decimal, currency: str, token: str, idempotency_key: str) -> GatewayResult:
        result = super().capture(amount=amount, currency=currency, token=token, idempotency_key=idempotency_key)
        path = os.environ.get(DIE_AFTER_ANSWER)
        if not path:
            return result
        marker = Path(path)
        try:
            whom = marker.read_text().strip()
            marker.unlink()
        except FileNotFoundError:
            return result
        seen = {**observe("capture"), "idempotency_key": idempotency_key, "pid": os.getpid()}
        marker.with_suffix(".seen").write_text(json.dumps(seen))
        if whom == "group":
            os.killpg(os.getpgrp(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("still alive after SIGKILL")
