"""The simulated gateway: outcomes per token, latency, timeouts, idempotency and lost answers."""

import time
import uuid
from decimal import Decimal

import pytest
from django.db import transaction

from payments.gateways import (
    GatewayError,
    GatewayStatus,
    GatewayTimeout,
    PaymentGateway,
    SimulatedGateway,
    get_gateway,
)
from payments.models import SimulatedCharge

pytestmark = pytest.mark.django_db(transaction=True)


def capture(gateway: SimulatedGateway, card: str = "tok_visa", key: str | None = None, amount: str = "59.97"):
    return gateway.capture(amount=Decimal(amount), currency="USD", token=card, idempotency_key=key or str(uuid.uuid4()))


def test_the_configured_gateway_is_the_simulated_one_and_fits_the_interface(settings):
    settings.PAYMENT_GATEWAY = "payments.gateways.SimulatedGateway"
    gateway = get_gateway()
    assert isinstance(gateway, SimulatedGateway)
    assert isinstance(gateway, PaymentGateway)


def test_tok_visa_is_captured_and_recorded_once(gateway):
    result = capture(gateway, key="key-1")
    assert result.status is GatewayStatus.CAPTURED
    assert result.reference.startswith("sim_ch_")
    charge = SimulatedCharge.objects.get()
    assert (charge.idempotency_key, charge.kind, charge.result) == ("key-1", "capture", "captured")
    assert charge.amount == Decimal("59.97")
    assert charge.reference == result.reference


def test_tok_charge_declined_is_declined_with_a_reason(gateway):
    result = capture(gateway, card="tok_chargeDeclined")
    assert result.status is GatewayStatus.DECLINED
    assert result.declined
    assert result.message == "card declined"


def test_an_unknown_token_is_declined(gateway):
    result = capture(gateway, card="tok_madeUp")
    assert result.declined
    assert result.message == "unknown token"


def test_tok_timeout_times_out_and_charges_nothing(gateway):
    with pytest.raises(GatewayTimeout):
        capture(gateway, card="tok_timeout")
    assert not SimulatedCharge.objects.exists()


def test_the_same_idempotency_key_replays_the_first_result_without_charging_again(gateway):
    first = capture(gateway, key="order-7")
    second = capture(gateway, key="order-7")
    assert second == first
    charge = SimulatedCharge.objects.get()
    assert charge.requests == 2


def test_different_keys_are_different_charges(gateway):
    assert capture(gateway).reference != capture(gateway).reference
    assert SimulatedCharge.objects.count() == 2


def test_a_key_reused_for_another_request_is_refused(gateway):
    capture(gateway, key="reused", amount="10.00")
    with pytest.raises(GatewayError, match="another request"):
        capture(gateway, key="reused", amount="20.00")
    assert SimulatedCharge.objects.get().amount == Decimal("10.00")


def test_a_lost_answer_still_charges_and_the_retry_gets_the_charge_back():
    gateway = SimulatedGateway(delay=0, lost_responses=1)
    with pytest.raises(GatewayTimeout):
        capture(gateway, key="lost-once")
    charge = SimulatedCharge.objects.get()
    assert charge.result == "captured"

    result = capture(gateway, key="lost-once")
    assert result.status is GatewayStatus.CAPTURED
    assert result.reference == charge.reference
    assert SimulatedCharge.objects.count() == 1
    assert SimulatedCharge.objects.get().requests == 2


def test_lost_answers_count_per_key(settings):
    settings.PAYMENT_GATEWAY_LOST_RESPONSES = 2
    gateway = SimulatedGateway(delay=0)
    for _ in range(2):
        with pytest.raises(GatewayTimeout):
            capture(gateway, key="twice")
    assert capture(gateway, key="twice").status is GatewayStatus.CAPTURED
    with pytest.raises(GatewayTimeout):
        capture(gateway, key="another")
    assert SimulatedCharge.objects.count() == 2


def test_the_charge_survives_the_rollback_of_the_callers_transaction(gateway):
    class Crash(Exception):
        pass

    with pytest.raises(Crash), transaction.atomic():
        capture(gateway, key="crashed-after-charging")
        raise Crash
    assert SimulatedCharge.objects.filter(idempotency_key="crashed-after-charging").exists()


def test_latency_is_simulated():
    gateway = SimulatedGateway(delay=0.3, lost_responses=0)
    started = time.monotonic()
    capture(gateway)
    assert time.monotonic() - started >= 0.3


def test_a_captured_charge_is_refunded_once_per_key(gateway):
    captured = capture(gateway, amount="30.00")
    refund = gateway.refund(reference=captured.reference, amount=Decimal("30.00"), currency="USD", idempotency_key="r")
    again = gateway.refund(reference=captured.reference, amount=Decimal("30.00"), currency="USD", idempotency_key="r")
    assert refund.status is GatewayStatus.REFUNDED
    assert refund.reference.startswith("sim_re_")
    assert again == refund
    assert SimulatedCharge.objects.filter(kind="refund").count() == 1


def test_a_refund_never_exceeds_the_capture(gateway):
    captured = capture(gateway, amount="30.00")
    gateway.refund(reference=captured.reference, amount=Decimal("20.00"), currency="USD", idempotency_key="r1")
    second = gateway.refund(reference=captured.reference, amount=Decimal("20.00"), currency="USD", idempotency_key="r2")
    assert second.declined
    assert "exceeds" in second.message


def test_a_refund_of_an_unknown_or_declined_charge_is_declined(gateway):
    declined = capture(gateway, card="tok_chargeDeclined")
    for reference in ("sim_ch_nothing", declined.reference):
        result = gateway.refund(
            reference=reference, amount=Decimal("1.00"), currency="USD", idempotency_key=str(uuid.uuid4())
        )
        assert result.declined
        assert result.message == "unknown charge"
