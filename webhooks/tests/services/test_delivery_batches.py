"""A sender claims a batch of its endpoint's deliveries in one statement and writes their outcomes in
one statement: the statements of a batch do not grow with its size, and each delivery keeps its own
lease check."""

from uuid import uuid4

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tenants.tests.factories import TenantFactory
from webhooks import transport
from webhooks.models import WebhookDelivery
from webhooks.services import batches, delivery_send
from webhooks.tests.factories import endpoint_with_secret, publish_confirmed
from webhooks.tests.receiver import Answer, Receiver, running

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _loopback_allowed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    settings.WEBHOOK_RETRY_SCHEDULE = [1, 1, 1]


def _statements_to_send(deliveries: int) -> list[str]:
    """The SQL statements of one task that sends `deliveries` deliveries of a fresh endpoint."""
    tenant = TenantFactory()
    with running(Receiver(default=Answer(204))) as receiver:
        endpoint_with_secret(tenant=tenant, url=receiver.url)
        for _ in range(deliveries):
            publish_confirmed(tenant.pk)
        first = WebhookDelivery.objects.filter(tenant_id=tenant.pk).order_by("position").first()
        with CaptureQueriesContext(connection) as queries:
            delivery_send(delivery_id=first.pk)
    assert len(receiver.received) == deliveries
    assert WebhookDelivery.objects.filter(tenant_id=tenant.pk, status="succeeded").count() == deliveries
    return [q["sql"] for q in queries.captured_queries]


def test_a_batch_of_twelve_takes_as_many_statements_as_a_batch_of_two():
    few, many = _statements_to_send(2), _statements_to_send(12)

    assert len(many) == len(few), f"{len(few)} statements for 2 deliveries, {len(many)} for 12"
    deliveries_written = [s for s in many if s.startswith("UPDATE") and WebhookDelivery._meta.db_table in s]
    # The claim's lease, the outcomes, the next of each subject woken, and the next claim's lease.
    assert len(deliveries_written) <= 4, deliveries_written


def test_a_delivery_whose_lease_was_taken_keeps_the_new_holders_state_and_the_others_are_recorded(tenant):
    with running(Receiver(default=Answer(204))) as receiver:
        endpoint, _ = endpoint_with_secret(tenant=tenant, url=receiver.url)
        for _ in range(3):
            publish_confirmed(tenant.pk, uuid4())
        batch = batches.batch_claim(endpoint.pk, limit=50)
    assert batch is not None
    first, taken, third = batch.deliveries
    assert {d.lease_token for d in WebhookDelivery.objects.all()} == {batch.token}, "one lease for the batch"
    # The lease of the second ran out mid-batch and another sender took it.
    other_token = uuid4()
    WebhookDelivery.objects.filter(pk=taken.pk).update(lease_token=other_token)
    answer = transport.Outcome(status_code=204, duration_ms=3)

    batches.batch_record(batch, [batches.Sent(d, first.updated_at, answer) for d in (first, taken, third)])

    rows = {d.pk: d for d in WebhookDelivery.objects.all()}
    assert (rows[first.pk].status, rows[first.pk].attempts) == ("succeeded", 1)
    assert (rows[third.pk].status, rows[third.pk].attempts) == ("succeeded", 1)
    assert (rows[taken.pk].status, rows[taken.pk].attempts, rows[taken.pk].lease_token) == ("pending", 0, other_token)
    assert not rows[taken.pk].attempt_log.exists(), "its outcome is the new holder's to write"


def test_a_recorded_success_wakes_the_next_event_of_its_subject_and_only_that_one(tenant):
    endpoint, _ = endpoint_with_secret(tenant=tenant, url="http://127.0.0.1:9/x")
    order_id = uuid4()
    for _ in range(3):
        publish_confirmed(tenant.pk, order_id)
    first, second, third = WebhookDelivery.objects.order_by("position")
    batch = batches.batch_claim(endpoint.pk, limit=50)
    assert batch is not None
    assert [d.pk for d in batch.deliveries] == [first.pk], "the later events of the subject wait"

    batches.batch_record(batch, [batches.Sent(batch.deliveries[0], first.updated_at, transport.Outcome(204))])

    rows = {d.pk: d for d in WebhookDelivery.objects.all()}
    assert rows[first.pk].status == "succeeded"
    assert rows[second.pk].next_attempt_at > second.next_attempt_at, "the next of the subject is due now"
    assert rows[second.pk].updated_at > second.updated_at
    assert rows[third.pk].next_attempt_at == third.next_attempt_at, "the one after it still waits"
    assert rows[third.pk].updated_at == third.updated_at
