"""A sender killed in the middle of a batch, with real processes: a Celery worker, the sweep and a
loopback receiver that holds a request in flight while the test kills the worker."""

import signal
import sys
import threading
from collections import Counter
from uuid import uuid4

import pytest

from testsupport.processes import ManagedProcess, wait_until
from webhooks.models import WebhookDelivery
from webhooks.services.batches import LEASE
from webhooks.tests.factories import endpoint_with_secret, publish_confirmed
from webhooks.tests.receiver import Answer, Receiver, running

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WORKER_ENV = {"WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true"}
WEBHOOK_QUEUE = "webhooks"  # where `CELERY_TASK_ROUTES` sends the webhook messages


def _ids(deliveries) -> list[str]:
    return [str(d.pk) for d in deliveries]


def _settled(worker: ManagedProcess, redis_broker) -> bool:
    """Every webhook message taken, and every webhook task the worker received finished."""
    tasks = [line for line in worker.output().splitlines() if "Task webhooks.send_webhook[" in line]
    received = sum("] received" in line for line in tasks)
    done = sum("] succeeded in" in line for line in tasks)
    return redis_broker.llen(WEBHOOK_QUEUE) == 0 and received == done


def test_a_worker_killed_in_the_middle_of_a_batch_loses_nothing_and_repeats_nothing_beyond_the_window(
    processes, tenant, redis_broker
):
    """Three orders with two events each: the first batch takes the first event of each and is
    recorded; the second batch takes the second events, and the worker is killed while the
    second of them is in flight. Once the killed batch's lease runs out, the sweep hands it on
    (`batches.LEASE`, 20 s: no setting shortens it, it must outlive the send window and a POST).

    Only what the killed batch had sent may come twice (its outcomes were never written): the
    at-least-once window of docs/webhooks.md (How ShelfWise sends them, *Handing on*) and
    docs/architecture.md (The at-least-once window for external effects); the receiver drops the
    copy by its `webhook-id`. What was recorded before the kill is never sent again.
    """
    release = threading.Event()
    # The first batch (3) and the first of the second answer at once; the next is held.
    answers = [Answer(204)] * 4 + [Answer(204, hold=release)]
    with running(Receiver(answers, default=Answer(204))) as receiver:
        endpoint_with_secret(tenant=tenant, url=receiver.url)
        orders = [uuid4() for _ in range(3)]
        for order_id in orders * 2:
            publish_confirmed(tenant.pk, order_id)
        deliveries = list(WebhookDelivery.objects.order_by("position"))
        recorded, killed = deliveries[:3], deliveries[3:]
        first = processes.worker("worker-1", concurrency=1, **WORKER_ENV)
        try:
            wait_until(lambda: len(receiver.received) >= 5, timeout=30, what="the second batch's second POST")
            first.kill(signal.SIGKILL)
        finally:
            release.set()
        assert [r.webhook_id for r in receiver.received] == _ids(recorded + killed[:2]), "the first batch, then two"
        assert set(WebhookDelivery.objects.filter(pk__in=_ids(recorded)).values_list("status", flat=True)) == {
            "succeeded"
        }, "the first batch was recorded before the kill"
        [(status, token)] = set(
            WebhookDelivery.objects.filter(pk__in=_ids(killed)).values_list("status", "lease_token")
        )
        assert (status, token is not None) == ("pending", True), "the second batch leased as one, not recorded"

        processes.start(
            "sweep",
            [sys.executable, "manage.py", "send_due_webhooks", "--verbosity", "2"],
            WEBHOOK_SWEEP_INTERVAL="0.2",
            **WORKER_ENV,
        )
        second = processes.worker("worker-2", concurrency=1, **WORKER_ENV)
        wait_until(
            lambda: WebhookDelivery.objects.filter(status="succeeded").count() == len(deliveries),
            timeout=LEASE.total_seconds() + 20,
            what="the killed batch sent again once its lease ran out",
        )
        wait_until(lambda: _settled(second, redis_broker), timeout=10, what="every message taken and done")

    seen = Counter(r.webhook_id for r in receiver.received)
    assert set(seen) == set(_ids(deliveries)), "every delivery reached the receiver"
    assert {i for i, n in seen.items() if n > 1} <= set(_ids(killed[:2])), "copies only of what the killed batch sent"
    assert all(seen[i] == 1 for i in _ids(recorded)), "what was recorded before the kill is never sent again"
    for delivery in deliveries:
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == ("succeeded", 1)
        assert [a.status_code for a in delivery.attempt_log.all()] == [204], "one attempt recorded, a success"
