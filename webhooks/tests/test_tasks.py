"""The sender in real Celery workers: Retry-After is honoured, and a slow receiver does not slow another."""

import time

import pytest

from testsupport.processes import wait_until
from webhooks.models import WebhookDelivery
from webhooks.tests.factories import endpoint_with_secret, publish_confirmed
from webhooks.tests.receiver import Answer, Receiver, running

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WORKER_ENV = {"WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true", "WEBHOOK_RETRY_SCHEDULE": "30,30"}


def test_429_with_retry_after_is_retried_after_about_that_long(processes, tenant):
    processes.worker("worker", **WORKER_ENV)
    with running(Receiver([Answer(429, headers={"Retry-After": "2"})])) as receiver:
        _, secret = endpoint_with_secret(tenant=tenant, url=receiver.url)
        publish_confirmed(tenant.pk)
        wait_until(lambda: len(receiver.received) >= 2, timeout=30, what="the retry after 429")
    gap = receiver.received[1].at - receiver.received[0].at
    assert 1.8 <= gap <= 5, f"retried after {gap:.2f}s, not after the 2 s asked (the schedule says 30 s)"
    receiver.received[1].verified(secret)
    wait_until(lambda: WebhookDelivery.objects.filter(status="succeeded").exists(), what="the delivery recorded")


def test_a_receiver_that_sleeps_does_not_slow_another(processes, tenant):
    processes.worker("worker", concurrency=2, **WORKER_ENV)
    with running(Receiver(default=Answer(200, delay=6))) as slow, running(Receiver()) as fast:
        endpoint_with_secret(tenant=tenant, url=slow.url, description="slow")
        endpoint_with_secret(tenant=tenant, url=fast.url, description="fast")
        started = time.monotonic()
        for _ in range(4):
            publish_confirmed(tenant.pk)
        wait_until(lambda: len(fast.received) == 4, timeout=30, what="four deliveries to the fast receiver")
        elapsed = time.monotonic() - started
        assert elapsed < 5, f"the fast receiver waited {elapsed:.1f}s behind the slow one"
        assert len(slow.received) <= 1, "the slow endpoint gets one request at a time"
