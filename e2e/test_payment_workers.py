"""End to end with real processes: a Celery worker captures and refunds, a relay re-sends retries."""

import json
import signal
import uuid
from decimal import Decimal

import pytest
from django.db import transaction

from domain_events.bus import event_bus
from domain_events.events import InventoryReserved, OrderCancelled, OrderLine
from domain_events.models import Delivery
from e2e.helpers import published
from payments.models import Payment, SimulatedCharge
from payments.services import payment_register_for_order
from payments.tests.gateways import DIE_AFTER_ANSWER
from testsupport.processes import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LINES = (OrderLine(sku="978-1", title="Emma", quantity=2, unit_price=Decimal("12.50")),)


def registered_payment(tenant) -> Payment:
    return payment_register_for_order(
        tenant_id=tenant.id, order_id=uuid.uuid4(), amount=Decimal("25.00"), currency="USD", payment_token="tok_visa"
    )


def reserve(payment: Payment) -> InventoryReserved:
    with transaction.atomic():
        return event_bus.publish(InventoryReserved(tenant_id=payment.tenant_id, order_id=payment.order_id, lines=LINES))


def status_of(payment: Payment) -> str:
    return Payment.objects.values_list("status", flat=True).get(pk=payment.pk)


def test_a_worker_captures_the_payment_of_a_reserved_order(processes, tenant):
    processes.worker()
    payment = registered_payment(tenant)
    event = reserve(payment)

    wait_until(lambda: status_of(payment) == Payment.Status.CAPTURED, timeout=30, what="the capture")
    charge = SimulatedCharge.objects.get()
    assert charge.idempotency_key == str(event.event_id)
    assert charge.amount == Decimal("25.00")
    [captured] = published("payment.captured", payment.order_id)
    assert captured.causation_id == event.event_id


def test_a_lost_answer_is_retried_by_the_relay_and_charges_exactly_once(processes, tenant):
    processes.worker(PAYMENT_GATEWAY_LOST_RESPONSES="1")
    processes.relay()
    payment = registered_payment(tenant)
    event = reserve(payment)

    wait_until(lambda: status_of(payment) == Payment.Status.CAPTURED, timeout=45, what="the retried capture")
    # The delivery's outcome is recorded just after the capture's own transaction.
    deliveries = Delivery.objects.filter(
        stored_event__event_id=event.event_id, handler="payments.capture_payment_for_order"
    )
    wait_until(lambda: deliveries.filter(status=Delivery.Status.SUCCEEDED).exists(), timeout=10, what="the delivery")
    assert deliveries.get().attempts == 2  # the first answer was lost, the retry found the charge
    charge = SimulatedCharge.objects.get()
    assert charge.requests == 2
    payment.refresh_from_db()
    assert payment.provider_reference == charge.reference
    assert len(published("payment.captured", payment.order_id)) == 1


def test_a_worker_refunds_a_cancelled_captured_order(processes, tenant):
    processes.worker()
    payment = registered_payment(tenant)
    reserve(payment)
    wait_until(lambda: status_of(payment) == Payment.Status.CAPTURED, timeout=30, what="the capture")

    with transaction.atomic():
        event_bus.publish(
            OrderCancelled(
                tenant_id=tenant.id,
                order_id=payment.order_id,
                reason="customer_request",
                previous_status="confirmed",
                lines=LINES,
                total_amount=Decimal("25.00"),
                currency="USD",
            )
        )
    wait_until(lambda: status_of(payment) == Payment.Status.REFUNDED, timeout=30, what="the refund")
    assert SimulatedCharge.objects.filter(kind="refund").count() == 1
    assert len(published("payment.refunded", payment.order_id)) == 1


@pytest.mark.parametrize(
    "whom",
    [
        pytest.param("process", id="pool-process-killed-broker-redelivers"),
        pytest.param("group", id="whole-worker-killed-lease-runs-out-relay-resends"),
    ],
)
def test_a_worker_killed_between_the_charge_and_its_record_captures_once_on_the_retry(
    processes, tmp_path, staff_api, customer_api, whom
):
    """The process running the capture dies (SIGKILL) right after the provider charged the card,
    before the capture is recorded. The retry asks the provider again with the same key and
    records the first charge: one charge, one capture, the order confirmed.

    `process`: a pool process dies; its worker gets the message back from the broker but drops it
    (a started delivery is never started again by a copy of its message), and once the run lease
    is over a relay claims the delivery again and sends it anew.
    `group`: the whole worker dies; once the delivery's run lease is over, a relay claims it
    again and sends it to a worker started afterwards."""
    marker = tmp_path / "die-once"
    marker.write_text(whom)
    worker = processes.worker(PAYMENT_GATEWAY="payments.tests.gateways.DyingGateway", **{DIE_AFTER_ANSWER: str(marker)})
    processes.relay()
    created = staff_api.post(
        "/api/v1/products/", {"sku": "EMMA-K", "title": "Emma", "price": "12.50", "stock": 5}, format="json"
    )
    assert created.status_code == 201, created.content
    placed = customer_api.post(
        "/api/v1/orders/", {"items": [{"sku": "EMMA-K", "quantity": 2}], "payment_token": "tok_visa"}, format="json"
    )
    assert placed.status_code == 201, placed.content
    order_id = placed.json()["id"]
    if whom == "group":
        wait_until(lambda: worker.popen.poll() is not None, timeout=30, what="the worker killed")
        assert worker.popen.returncode == -signal.SIGKILL
        processes.worker("worker-2", PAYMENT_GATEWAY="payments.tests.gateways.DyingGateway")

    def order_status() -> str:
        return customer_api.get(f"/api/v1/orders/{order_id}/").json()["status"]

    wait_until(lambda: order_status() == "confirmed", timeout=60, what="the order confirmed after the retry")
    # The process did die at that point, and held nothing while the provider answered.
    assert not marker.exists()
    seen = json.loads(marker.with_suffix(".seen").read_text())
    assert (seen["transaction_open"], seen["payment_rows_free"], seen["delivery_rows_free"]) == (False, True, True)
    if whom == "process":
        worker.wait_for_output("signal 9 (SIGKILL)", timeout=10)

    [reserved] = published("inventory.reserved", order_id)
    assert seen["idempotency_key"] == str(reserved.event_id)
    charge = SimulatedCharge.objects.get()
    assert (charge.idempotency_key, charge.kind, charge.result) == (str(reserved.event_id), "capture", "captured")
    assert charge.requests == 2, "the retry asked the provider again with the same key"
    payment = Payment.objects.get(order_id=order_id)
    assert (payment.status, payment.provider_reference) == (Payment.Status.CAPTURED, charge.reference)
    assert len(published("payment.captured", order_id)) == 1
    assert len(published("order.confirmed", order_id)) == 1
    # The delivery's outcome is recorded just after the capture's own transaction.
    delivery = Delivery.objects.filter(stored_event=reserved, handler="payments.capture_payment_for_order")
    wait_until(lambda: delivery.filter(status=Delivery.Status.SUCCEEDED).exists(), timeout=10, what="the delivery")
    assert delivery.get().attempts == 1
