"""Every write that ends or moves a lease respects it: a release never makes a leased row due, and
a claim takes a held row out of waiting, so no later release can move the lease it holds."""

import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from domain_events.bus import event_bus
from domain_events.celery_claims import claim_for_workers
from domain_events.models import Delivery
from domain_events.outcomes import mark_succeeded as _mark_succeeded
from domain_events.subscriptions import subscriptions
from domain_events.tests.probe.events import ProbeHappened

pytestmark = pytest.mark.django_db(transaction=True)
SLOW = "probe.slow"


@pytest.fixture
def two_of_one_aggregate(settings):
    """Two events of one aggregate, nothing run yet: the `probe.slow` deliveries (first, second)."""
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
    probe_id, tenant_id = uuid.uuid4(), uuid.uuid4()
    for n in (1, 2):
        with transaction.atomic():
            event_bus.publish(ProbeHappened(tenant_id=tenant_id, probe_id=probe_id, n=n))
    first, second = Delivery.objects.filter(handler=SLOW, aggregate_id=probe_id).order_by("stored_event__position")
    return first, second


def test_a_success_does_not_make_due_a_row_that_someone_holds_under_a_lease(two_of_one_aggregate):
    first, second = two_of_one_aggregate
    token, until = uuid.uuid4(), timezone.now() + timedelta(minutes=5)
    Delivery.objects.filter(pk=second.pk).update(held_by=first.pk, lease_token=token, next_attempt_at=until)

    _mark_succeeded([first.pk], timezone.now())

    second.refresh_from_db()
    assert (second.lease_token, second.next_attempt_at) == (token, until), "the lease stands until its holder ends it"


def test_a_success_releases_a_row_that_waits_under_no_lease(two_of_one_aggregate):
    first, second = two_of_one_aggregate
    Delivery.objects.filter(pk=second.pk).update(
        held_by=first.pk, lease_token=None, next_attempt_at=timezone.now() + timedelta(days=1)
    )

    _mark_succeeded([first.pk], timezone.now())

    second.refresh_from_db()
    assert second.held_by is None
    assert second.next_attempt_at <= timezone.now()


def test_a_claim_for_workers_takes_a_held_row_out_of_waiting(two_of_one_aggregate):
    first, second = two_of_one_aggregate
    # Held behind a failed first delivery whose retry time has come: the claim may lease it.
    Delivery.objects.filter(pk=first.pk).update(next_attempt_at=timezone.now() + timedelta(hours=1))
    Delivery.objects.filter(pk=second.pk).update(
        held_by=first.pk, next_attempt_at=timezone.now() - timedelta(seconds=1)
    )

    claims, _ = claim_for_workers(10, [subscriptions.get(SLOW)])

    assert [c.delivery_id for c in claims] == [second.pk]
    second.refresh_from_db()
    assert second.lease_token == claims[0].token
    assert second.held_by is None, "a leased row waits for nothing, so no release can move its lease"
