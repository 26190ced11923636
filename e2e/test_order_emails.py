"""A customer's order, end to end over HTTP with a real worker and relay, e-mailed through a real
SMTP server; killing the worker mid-send loses no e-mail."""

import signal

import pytest

from domain_events.testing import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_confirmed_order_is_emailed_once_and_a_killed_worker_loses_no_email(
    processes, smtp_server, customer, staff_api, customer_api
):
    customer.email = "carol@example.com"
    customer.save(update_fields=["email"])
    assert (
        staff_api.post(
            "/api/v1/products/", {"sku": "BOOK-1", "title": "Dune", "price": "9.99", "stock": 20}, format="json"
        ).status_code
        == 201
    )
    smtp = f"smtp://127.0.0.1:{smtp_server.port}"
    # The first worker is killed while the SMTP server is still refusing: nothing went out yet.
    smtp_server.refuse = 1000
    first = processes.worker("worker-1", EMAIL_URL=smtp)
    processes.relay("relay", EMAIL_URL=smtp)
    orders = []
    for _ in range(3):
        response = customer_api.post(
            "/api/v1/orders/", {"items": [{"sku": "BOOK-1", "quantity": 1}], "payment_token": "tok_visa"}, format="json"
        )
        assert response.status_code == 201, response.content
        orders.append(response.json()["id"])
    wait_until(lambda: smtp_server.refuse < 1000, timeout=60, what="a first attempt to send")
    first.kill(signal.SIGKILL)
    smtp_server.refuse = 0
    processes.worker("worker-2", EMAIL_URL=smtp)
    wait_until(lambda: len(smtp_server.messages) >= 3, timeout=90, what="three confirmation e-mails")
    subjects = sorted(m["Subject"] for m in smtp_server.messages)
    assert subjects == sorted(f"Your order {o[:8]} is confirmed" for o in orders)
    assert all(m["To"] == "carol@example.com" for m in smtp_server.messages)
