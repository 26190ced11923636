"""Recording an attempt locks rows in the claim's order (deliveries, then the endpoint): a claim of
the next delivery of the subject, which holds that delivery and then locks the endpoint, never
deadlocks with it. (Found by `make chaos`: the success path cleared the endpoint's
`failing_since` before waking the next delivery, and PostgreSQL broke the cycle by failing one
of the two: a lost outcome, sent again later.)"""

import threading
from uuid import uuid4

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from testsupport.processes import wait_until
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import delivery_send
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
            # What `_claim` does for the second delivery: its row first, then the endpoint's.
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
