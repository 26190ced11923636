"""An `Idempotency-Key` dies with its request: when the gunicorn worker serving a keyed
`POST orders/` is SIGKILLed mid-request, the client's retry with the same key gets through within
seconds (the key's in-flight mark is the request's own database session), and the order is
placed once."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from django.db import connection, transaction

from core.models import IdempotencyKey
from orders.models import Order
from tenants.services import token_issue
from testsupport.processes import free_port, http_up, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BODY = {"items": [{"sku": "BOOK-1", "quantity": 1}], "payment_token": "tok_visa"}
KEY = "retry-after-a-killed-worker"


def _blocked_backend_port() -> int | None:
    """The client port of the backend waiting for a lock this session holds, if there is one."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # the activity now, not as the transaction first saw it
        cursor.execute("SELECT client_port FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))")
        row = cursor.fetchone()
    return row[0] if row else None


def _process_with_local_port(candidates: list[int], port: int) -> int:
    """Which of `candidates` holds the TCP socket bound to local `port` on loopback."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for pid in candidates:
        fds = Path(f"/proc/{pid}/fd")
        for fd in fds.iterdir():
            try:
                if os.readlink(fd) in inodes:
                    return pid
            except FileNotFoundError:
                continue
    raise AssertionError(f"no process among {candidates} has the connection from port {port}")


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_a_retry_gets_through_within_seconds_of_the_worker_serving_its_key_being_killed(processes, customer, staff_api):
    created = staff_api.post(
        "/api/v1/products/", {"sku": "BOOK-1", "title": "Dune", "price": "9.99", "stock": 5}, format="json"
    )
    assert created.status_code == 201, created.content
    port = free_port()
    gunicorn = [sys.executable, "-m", "gunicorn", "config.wsgi", "-c", "config/gunicorn.conf.py"]
    web = processes.start("web", [*gunicorn, "--bind", f"127.0.0.1:{port}", "--workers", "2", "--timeout", "120"])
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_up(f"{url}/healthz"), timeout=30, what="gunicorn")
    wait_until(lambda: len(_children(web.pid)) == 2, timeout=30, what="gunicorn's two workers")
    headers = {"Authorization": f"Token {token_issue(user=customer).key}", "Idempotency-Key": KEY}

    killed_at: list[float] = []
    answers: list[tuple[float, int | str]] = []
    placed: list[dict] = []
    answered = threading.Event()

    def client() -> None:
        """Retries the same request with the same key, as a careful client does, for 20 s."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                response = requests.post(f"{url}/api/v1/orders/", json=BODY, headers=headers, timeout=30)
            except requests.ConnectionError as exc:
                answers.append((time.monotonic(), type(exc).__name__))
            else:
                answers.append((time.monotonic(), response.status_code))
                if response.status_code != 409:
                    placed.append(response.json())
                    answered.set()
                    return
            time.sleep(0.2)
        answered.set()

    retrying = threading.Thread(target=client)
    # Holding the orders table in share mode keeps the first attempt waiting at its order's insert:
    # in the middle of its transaction, after its key was claimed.
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {Order._meta.db_table} IN SHARE MODE")
        retrying.start()
        client_port = wait_until(_blocked_backend_port, timeout=30, what="the order's insert to wait for the table")
        assert IdempotencyKey.objects.get(key=KEY).state == IdempotencyKey.State.IN_PROGRESS
        serving = _process_with_local_port(_children(web.pid), client_port)
        os.kill(serving, signal.SIGKILL)
        killed_at.append(time.monotonic())
    # The table is free again: the dead worker's insert goes on, finds no client and rolls back.

    assert answered.wait(30)
    retrying.join(5)
    last_at, last = answers[-1]
    assert last == 201, answers
    assert last_at - killed_at[0] < 5, f"the retry got through {last_at - killed_at[0]:.1f}s after the kill: {answers}"
    assert answers[0][1] == "ConnectionError"  # the first attempt died with its worker

    assert Order.objects.filter(customer=customer).count() == 1
    replay = requests.post(f"{url}/api/v1/orders/", json=BODY, headers=headers, timeout=30)
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == placed[0]["id"]
    assert Order.objects.filter(customer=customer).count() == 1
    assert IdempotencyKey.objects.get(key=KEY).state == IdempotencyKey.State.COMPLETED
