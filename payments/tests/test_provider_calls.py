"""No transaction is open and no row is locked while the provider answers a capture or a refund."""

import pytest

from payments.models import Payment
from payments.tests.factories import PaymentFactory
from payments.tests.gateways import ObservingGateway
from payments.tests.helpers import published, run_deliveries
from payments.tests.test_handlers import CAPTURE, SETTLE, cancel, reserve

pytestmark = pytest.mark.django_db(transaction=True)

FREE = {"transaction_open": False, "payment_rows_free": True, "delivery_rows_free": True}


@pytest.fixture
def observing(settings, no_fast_path) -> list[dict[str, object]]:
    settings.PAYMENT_GATEWAY = "payments.tests.gateways.ObservingGateway"
    ObservingGateway.seen = []
    return ObservingGateway.seen


def test_the_capture_holds_no_transaction_and_no_row_lock_during_the_provider_call(tenant, observing):
    payment = PaymentFactory(tenant=tenant)
    reserve(tenant, payment.order_id)
    assert run_deliveries(CAPTURE).succeeded == 1

    assert observing == [{"request": "capture", **FREE}]
    payment.refresh_from_db()
    assert payment.status == Payment.Status.CAPTURED
    assert len(published("payment.captured", payment.order_id)) == 1


def test_the_refund_holds_no_transaction_and_no_row_lock_during_the_provider_call(tenant, observing):
    payment = PaymentFactory(tenant=tenant)
    reserve(tenant, payment.order_id)
    run_deliveries(CAPTURE)
    cancel(tenant, payment.order_id, previous_status="confirmed")
    assert run_deliveries(SETTLE).succeeded == 1

    assert observing == [{"request": "capture", **FREE}, {"request": "refund", **FREE}]
    payment.refresh_from_db()
    assert payment.status == Payment.Status.REFUNDED
    assert len(published("payment.refunded", payment.order_id)) == 1
