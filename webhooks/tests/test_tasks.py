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


def _webhook_ids(receiver: Receiver) -> list[str]:
    return [r.webhook_id for r in receiver.received]


def test_a_batch_answered_204_500_204_retries_only_the_failure_on_its_own_schedule(processes, tenant):
    # The first answer waits a moment, long enough to look at the batch's leases meanwhile.
    answers = [Answer(204, delay=1.5), Answer(500), Answer(204)]
    with running(Receiver(answers, default=Answer(204))) as receiver:
        endpoint_with_secret(tenant=tenant, url=receiver.url)
        for _ in range(3):
            publish_confirmed(tenant.pk)  # three orders: nothing waits for anything
        first, failing, third = WebhookDelivery.objects.order_by("position")
        processes.worker("worker", **{**WORKER_ENV, "WEBHOOK_RETRY_SCHEDULE": "3,600", "WEBHOOK_RETRY_JITTER": "0"})

        wait_until(lambda: len(receiver.received) >= 1, timeout=30, what="the first POST")
        leases = list(WebhookDelivery.objects.values_list("lease_token", flat=True))
        assert leases[0] is not None
        assert leases == [leases[0]] * 3, "the three were claimed together, under one lease"

        wait_until(lambda: len(receiver.received) >= 4, timeout=30, what="the retry of the failed one")
        wait_until(
            lambda: set(WebhookDelivery.objects.values_list("status", flat=True)) == {"succeeded"},
            what="every outcome recorded",
        )
    assert _webhook_ids(receiver) == [str(d.pk) for d in (first, failing, third, failing)], "only the failure again"
    for delivery in (first, failing, third):
        delivery.refresh_from_db()
    assert [d.attempts for d in (first, failing, third)] == [1, 2, 1]
    failed_attempt, retried = failing.attempt_log.all()
    assert (failed_attempt.status_code, retried.status_code) == (500, 204)
    waited = (retried.started_at - failed_attempt.started_at).total_seconds()
    assert 3 <= waited < 10, f"retried {waited:.1f}s after its failure: its own first step (3 s), not the batch's"


def test_a_message_delivered_twice_sends_nothing_twice(processes, tenant):
    from webhooks.services.queue import enqueue

    with running(Receiver([Answer(204, delay=1.5)], default=Answer(204))) as receiver:
        endpoint_with_secret(tenant=tenant, url=receiver.url)
        for _ in range(3):
            publish_confirmed(tenant.pk)
        deliveries = [str(pk) for pk in WebhookDelivery.objects.order_by("position").values_list("pk", flat=True)]
        enqueue(deliveries)  # every message twice, the copies behind the originals
        processes.worker("worker", concurrency=2, **WORKER_ENV)

        wait_until(lambda: len(receiver.received) >= 1, timeout=30, what="the first POST")
        enqueue(deliveries)  # and a third time while the batch is in flight
        wait_until(
            lambda: set(WebhookDelivery.objects.values_list("status", flat=True)) == {"succeeded"},
            timeout=30,
            what="every delivery sent",
        )
        time.sleep(2)  # let every copy reach the worker
    assert sorted(_webhook_ids(receiver)) == sorted(deliveries), "each delivery once"
    assert set(WebhookDelivery.objects.values_list("attempts", flat=True)) == {1}


def test_a_fan_out_sends_one_message_per_endpoint_and_its_task_sends_every_delivery(
    processes, tenant, settings, redis_broker
):
    """Three orders fanned out in one relay pass to two endpoints: two messages, the first delivery
    of each endpoint's, and each task's batch takes the other two with it."""
    from domain_events.relay import Relay
    from webhooks.tests.test_sweep import messages_per_delivery

    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
    redis_broker.flushdb()
    with running(Receiver()) as one, running(Receiver()) as other:
        endpoint_with_secret(tenant=tenant, url=one.url, description="one")
        endpoint_with_secret(tenant=tenant, url=other.url, description="other")
        for _ in range(3):
            publish_confirmed(tenant.pk)
        Relay(poll_interval=0.05).drain()
        deliveries = WebhookDelivery.objects.order_by("position", "endpoint__description")
        assert deliveries.count() == 6
        firsts = {str(d.pk) for d in deliveries[:2]}
        assert messages_per_delivery(redis_broker) == dict.fromkeys(firsts, 1)
        processes.worker("worker", **WORKER_ENV)
        wait_until(
            lambda: set(WebhookDelivery.objects.values_list("status", flat=True)) == {"succeeded"},
            timeout=30,
            what="every delivery sent",
        )
    for receiver, description in ((one, "one"), (other, "other")):
        sent = deliveries.filter(endpoint__description=description).values_list("pk", flat=True)
        assert _webhook_ids(receiver) == [str(pk) for pk in sent], "each once, in order"
