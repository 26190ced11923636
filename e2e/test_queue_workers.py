"""Workers per queue: two relays and two Celery workers, one on `payments` and one on `email`, share
one database; every delivery is done once, on its own queue, and a backlog of slow payments never
holds up the e-mails."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from domain_events.models import Delivery, StoredEvent
from notifications.models import EmailMessage
from payments.models import Payment, SimulatedCharge
from testsupport.processes import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ORDERS = "/api/v1/orders/"
PAYMENTS_HANDLERS = ("payments.capture_payment_for_order", "payments.void_or_refund_cancelled_order")
EMAIL_HANDLER = "notifications.email_customer_about_order"
N = 6
GATEWAY_DELAY = "1"  # seconds per capture or refund, on a payments worker that runs one at a time
SUCCEEDED = re.compile(r"Task domain_events\.run_delivery\[[^\]]+\] succeeded in [^:]+: \{'succeeded': (\d+)")


def ran(worker) -> int:
    """Deliveries a worker ran to success, however many each task carried (messages it dropped as
    stale are not counted)."""
    return sum(int(n) for n in SUCCEEDED.findall(worker.output()))


def test_two_relays_and_a_worker_per_queue_do_every_delivery_once_and_payments_never_hold_up_email(
    settings, processes, smtp_server, customer, staff_api, customer_api
):
    # The relays dispatch everything: this process (the web side) only records.
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
    customer.email = "carol@example.com"
    customer.save(update_fields=["email"])
    smtp = f"smtp://127.0.0.1:{smtp_server.port}"
    # A backlog of slow payments is expected here: no relay sends a queued message again for it.
    relay_env = {"EMAIL_URL": smtp, "OUTBOX_CELERY_LEASE": "120"}
    payments = processes.worker("payments", "-Q", "payments", concurrency=1, PAYMENT_GATEWAY_DELAY=GATEWAY_DELAY)
    email = processes.worker("email", "-Q", "email", concurrency=2, EMAIL_URL=smtp)
    processes.relay("relay-1", **relay_env)
    processes.relay("relay-2", **relay_env)
    created = staff_api.post(
        "/api/v1/products/", {"sku": "DUNE-1", "title": "Dune", "price": "9.99", "stock": 50}, format="json"
    )
    assert created.status_code == 201, created.content

    order_ids = []
    for _ in range(N):
        response = customer_api.post(
            ORDERS, {"items": [{"sku": "DUNE-1", "quantity": 1}], "payment_token": "tok_visa"}, format="json"
        )
        assert response.status_code == 201, response.content
        order_ids.append(response.json()["id"])

    def confirmation_emails() -> int:
        return sum(1 for m in smtp_server.messages if m["Subject"].endswith("is confirmed"))

    wait_until(lambda: confirmation_emails() == N, timeout=90, interval=0.2, what="every order confirmed and e-mailed")

    # A flood of slow refunds on `payments`: the cancellation e-mails go out on `email` meanwhile.
    for order_id in order_ids:
        assert staff_api.post(f"{ORDERS}{order_id}/cancel").status_code == 200

    def cancellation_emails() -> int:
        return sum(1 for m in smtp_server.messages if "cancelled" in m["Subject"])

    wait_until(lambda: cancellation_emails() == N, timeout=60, interval=0.1, what="every cancellation e-mail")
    refunded = Payment.objects.filter(order_id__in=order_ids, status=Payment.Status.REFUNDED).count()
    assert refunded < N, "the e-mails did not wait for the refunds queued before them"

    wait_until(
        lambda: Payment.objects.filter(order_id__in=order_ids, status=Payment.Status.REFUNDED).count() == N,
        timeout=90,
        what="every refund",
    )
    deliveries = Delivery.objects.filter(aggregate_id__in=order_ids)
    wait_until(lambda: not deliveries.filter(status__in=Delivery.OPEN).exists(), timeout=30, what="every delivery")

    # Every delivery once: succeeded at its first attempt; every side effect once.
    assert set(deliveries.values_list("status", "attempts").distinct()) == {(Delivery.Status.SUCCEEDED, 1)}
    assert StoredEvent.objects.filter(aggregate_id__in=order_ids, type="payment.refunded").count() == N
    charges = SimulatedCharge.objects.all()
    assert sorted(charges.values_list("kind", flat=True)) == sorted(["capture"] * N + ["refund"] * N)
    assert set(charges.values_list("requests", flat=True)) == {1}, "the gateway was called once per capture and refund"
    assert len(smtp_server.messages) == 2 * N
    assert len({m["Message-ID"] for m in smtp_server.messages}) == 2 * N
    assert EmailMessage.objects.filter(order_id__in=order_ids, status=EmailMessage.Status.SENT).count() == 2 * N

    # Each worker ran exactly its own queue's deliveries.
    remote = Counter(
        deliveries.filter(handler__in=[*PAYMENTS_HANDLERS, EMAIL_HANDLER]).values_list("handler", flat=True)
    )
    assert remote == {**dict.fromkeys(PAYMENTS_HANDLERS, N), EMAIL_HANDLER: 2 * N}
    assert ran(payments) == 2 * N
    assert ran(email) == 2 * N
