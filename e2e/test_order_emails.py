"""A customer's order, end to end over HTTP with a real worker and relay, e-mailed through a real
SMTP server; a worker killed in the middle of sending loses no e-mail."""

import signal

import pytest

from testsupport.processes import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_worker_killed_mid_send_loses_no_email(processes, smtp_server, customer, staff_api, customer_api):
    customer.email = "carol@example.com"
    customer.save(update_fields=["email"])
    created = staff_api.post(
        "/api/v1/products/", {"sku": "BOOK-1", "title": "Dune", "price": "9.99", "stock": 20}, format="json"
    )
    assert created.status_code == 201
    smtp = f"smtp://127.0.0.1:{smtp_server.port}"
    smtp_server.stall = 30  # the server takes its time over DATA: the worker is caught mid-send
    first = processes.worker("worker-1", EMAIL_URL=smtp)
    processes.relay("relay", EMAIL_URL=smtp)
    orders = []
    for _ in range(3):
        response = customer_api.post(
            "/api/v1/orders/", {"items": [{"sku": "BOOK-1", "quantity": 1}], "payment_token": "tok_visa"}, format="json"
        )
        assert response.status_code == 201, response.content
        orders.append(response.json()["id"])
    wait_until(lambda: smtp_server.data_started >= 1, timeout=60, what="a worker in the middle of sending")
    first.kill(signal.SIGKILL)
    smtp_server.stall = 0
    processes.worker("worker-2", EMAIL_URL=smtp)
    wait_until(
        lambda: {m["Subject"] for m in smtp_server.messages} >= {f"Your order {o[:8]} is confirmed" for o in orders},
        timeout=90,
        what="every order's confirmation e-mail",
    )
    assert all(m["To"] == "carol@example.com" for m in smtp_server.messages)
    by_subject: dict[str, set[str]] = {}
    for m in smtp_server.messages:
        by_subject.setdefault(m["Subject"], set()).add(m["Message-ID"])
    assert all(len(ids) == 1 for ids in by_subject.values()), "a second copy, if any, has the same Message-ID"
