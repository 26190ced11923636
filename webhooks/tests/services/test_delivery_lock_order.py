"""Every path that waits for a row lock takes deliveries first and the endpoint last; a claim locks
the endpoint and then takes only deliveries nobody holds (`SKIP LOCKED`), so it never waits while
holding the endpoint. Recording a success or a `410 Gone`, and burying for a disabled endpoint,
never deadlock with a claim or with another outcome that holds a delivery and then locks the
endpoint. (Found by `make chaos`: the success path cleared the endpoint's `failing_since` before
waking the next delivery, and PostgreSQL broke the cycle by failing one of the two: a lost
outcome, sent again later.)"""

import threading
from collections.abc import Callable
from datetime import timedelta
from uuid import uuid4

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from testsupport.processes import wait_until
from webhooks import transport
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import batches, delivery_send
from webhooks.tests.factories import endpoint_with_secret, publish_confirmed
from webhooks.tests.receiver import Receiver, running

pytestmark = pytest.mark.django_db(transaction=True)


def _waiting_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def test_recording_a_success_leaves_the_endpoint_to_a_claim_that_holds_the_next_delivery(tenant, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    with running(Receiver()) as receiver:
        endpoint, _ = endpoint_with_secret(tenant=tenant, url=receiver.url)
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now())
        order_id = uuid4()
        publish_confirmed(tenant.pk, order_id)
        publish_confirmed(tenant.pk, order_id)
        first, second = WebhookDelivery.objects.order_by("position")

        claim_holds_next = threading.Event()
        claim_may_go_on = threading.Event()
        claim_got_endpoint: list[bool] = []

        def claim_of_the_next_delivery() -> None:
            # What another outcome does: a delivery's row first (here the second), then the endpoint's.
            try:
                with transaction.atomic():
                    WebhookDelivery.objects.select_for_update().get(pk=second.pk)
                    claim_holds_next.set()
                    claim_may_go_on.wait(30)
                    with connection.cursor() as cursor:
                        cursor.execute("SET LOCAL lock_timeout = '2s'")
                    try:
                        with transaction.atomic():
                            WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
                        claim_got_endpoint.append(True)
                    except Exception:
                        claim_got_endpoint.append(False)
            finally:
                connections.close_all()

        def send_first() -> None:
            try:
                delivery_send(delivery_id=first.pk)
            finally:
                connections.close_all()

        claim = threading.Thread(target=claim_of_the_next_delivery)
        claim.start()
        assert claim_holds_next.wait(10)
        sender = threading.Thread(target=send_first)
        sender.start()
        # The sender has posted and, recording the success, waits for the second delivery's row.
        wait_until(_waiting_for_a_lock, timeout=30, what="the sender to wait for the next delivery's lock")
        claim_may_go_on.set()
        claim.join(30)
        sender.join(30)

    assert claim_got_endpoint == [True], "the recording held the endpoint while it waited for the next delivery"
    first.refresh_from_db()
    assert first.status == WebhookDelivery.Status.SUCCEEDED
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None


# --- every path: deliveries first, the endpoint last ---------------------------------------------


def _open_delivery(endpoint: WebhookEndpoint, *, subject: str, position: int, **fields) -> WebhookDelivery:
    return WebhookDelivery.objects.create(
        tenant_id=endpoint.tenant_id,
        endpoint=endpoint,
        event_id=uuid4(),
        event_type="order.confirmed",
        subject=subject,
        position=position,
        payload={},
        next_attempt_at=timezone.now() - timedelta(seconds=1),
        **fields,
    )


def _lock_waits() -> int:
    """How many other sessions of the test database wait for a lock, as of now."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # not the snapshot this transaction first took
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def _race(first: Callable[[], object], second: Callable[[], object]) -> list[BaseException]:
    """Run `first` and then `second`, each in a session of its own, so that both are in the middle
    of their transactions at once; returns what they raised.

    The test's session holds the deliveries' table in share mode: a session may read and lock rows
    of it but waits at its first change of one. So `first` runs up to its first change of a
    delivery, holding whatever it locked until then; `second` runs up to its own first change or
    until it waits for `first`; then the table is free and both go on.
    """
    errors: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        try:
            call()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(call,)) for call in (first, second)]
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {WebhookDelivery._meta.db_table} IN SHARE MODE")
        for waiting, thread in enumerate(threads, start=1):
            thread.start()
            wait_until(lambda n=waiting: _lock_waits() >= n, timeout=30, what=f"{waiting} sessions to wait for a lock")
    for thread in threads:
        thread.join(30)
    return errors


def _record(delivery: WebhookDelivery, token, answer: transport.Outcome) -> bool:
    """What the sender of `delivery` does once the receiver answered: record the batch of one."""
    batch = batches.Batch(delivery.endpoint, token, [delivery], signing=[])
    return batches.batch_record(batch, [batches.Sent(delivery, timezone.now(), answer)])


def test_a_410_disables_the_endpoint_after_its_deliveries_so_a_claim_never_deadlocks(tenant, settings):
    settings.WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT = 2  # the claim goes on beside the sender told 410
    endpoint, _ = endpoint_with_secret(tenant=tenant)
    token = uuid4()
    gone = _open_delivery(
        endpoint, subject="order-1", position=1, lease_token=token, leased_until=timezone.now() + timedelta(minutes=1)
    )
    other = _open_delivery(endpoint, subject="order-2", position=2)
    answer = transport.Outcome(status_code=410, body="gone", duration_ms=5)

    errors = _race(
        lambda: _record(gone, token, answer),  # the sender of the first, told 410
        lambda: batches.batch_claim(endpoint.pk, limit=50),  # a claim: the endpoint, then free deliveries
    )

    assert errors == [], errors  # PostgreSQL found no deadlock to break
    endpoint.refresh_from_db()
    assert not endpoint.is_active
    assert "410" in endpoint.disabled_reason
    gone.refresh_from_db()
    other.refresh_from_db()
    assert gone.status == WebhookDelivery.Status.DEAD
    if other.status != WebhookDelivery.Status.DEAD and other.leased_until is None:
        # The claim left it for later (the endpoint had a request in flight): the next claim, on
        # the sweep's message, finds the endpoint disabled.
        assert batches.batch_claim(endpoint.pk, limit=50) is None
        other.refresh_from_db()
    # Killed, or claimed just before the endpoint was disabled (then sent once more, and told 410).
    assert other.status == WebhookDelivery.Status.DEAD or other.leased_until is not None


def test_two_senders_told_410_at_once_never_deadlock(tenant):
    endpoint, _ = endpoint_with_secret(tenant=tenant)
    leases = {"lease_token": None, "leased_until": timezone.now() + timedelta(minutes=1)}
    tokens = [uuid4(), uuid4()]
    deliveries = [
        _open_delivery(endpoint, subject=f"order-{n}", position=n, **{**leases, "lease_token": token})
        for n, token in enumerate(tokens, start=1)
    ]
    answer = transport.Outcome(status_code=410, body="gone", duration_ms=5)

    errors = _race(
        *(lambda d=delivery, t=token: _record(d, t, answer) for delivery, token in zip(deliveries, tokens, strict=True))
    )

    assert errors == [], errors
    assert not WebhookEndpoint.objects.get(pk=endpoint.pk).is_active
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {WebhookDelivery.Status.DEAD}


def test_a_message_for_a_disabled_endpoint_buries_its_delivery_without_locking_the_endpoint(tenant):
    endpoint, _ = endpoint_with_secret(tenant=tenant, is_active=False)
    first = _open_delivery(endpoint, subject="order-1", position=1)
    following = _open_delivery(endpoint, subject="order-1", position=2)

    errors = _race(lambda: delivery_send(delivery_id=first.pk), lambda: delivery_send(delivery_id=following.pk))

    assert errors == [], errors
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {WebhookDelivery.Status.DEAD}
