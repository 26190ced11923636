"""`OUTBOX_ADMISSION_MAX_BACKLOG`: `POST orders/` waits (503, `Retry-After`) while the handlers are far behind."""

from datetime import timedelta

import pytest
from django.utils import timezone

from domain_events import admission
from domain_events.models import Delivery, StoredEvent
from orders.models import Order

ORDERS = "/api/v1/orders/"
BODY = {"items": [{"sku": "BOOK-1", "quantity": 2}], "payment_token": "tok_visa"}


@pytest.fixture
def limit(settings):
    def set_limit(seconds: float) -> None:
        settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "ADMISSION_MAX_BACKLOG": timedelta(seconds=seconds)}
        admission.forget()

    yield set_limit
    admission.forget()


def a_backlog(seconds: float) -> int:
    """Make the open deliveries of what was placed so far look `seconds` old; how many there are."""
    admission.forget()
    return Delivery.objects.filter(status="pending").update(
        created_at=timezone.now() - timedelta(seconds=seconds), attempts=0, held_by=None
    )


@pytest.mark.django_db
def test_far_behind_an_order_is_refused_with_retry_after_and_nothing_is_written(catalog, customer_api, limit):
    limit(10)
    assert customer_api.post(ORDERS, BODY, format="json").status_code == 201
    assert a_backlog(70) > 0
    events = StoredEvent.objects.count()

    refused = customer_api.post(ORDERS, BODY, format="json")

    assert refused.status_code == 503
    assert refused.json()["code"] == "busy"
    assert refused["Retry-After"] == "30"
    assert Order.objects.count() == 1
    assert StoredEvent.objects.count() == events


@pytest.mark.django_db
def test_retry_after_is_about_what_is_over_the_limit(catalog, customer_api, limit):
    limit(10)
    customer_api.post(ORDERS, BODY, format="json")
    a_backlog(14)
    assert customer_api.post(ORDERS, BODY, format="json")["Retry-After"] in ("4", "5")


@pytest.mark.django_db
def test_within_the_limit_or_with_no_limit_orders_are_taken(catalog, customer_api, limit):
    customer_api.post(ORDERS, BODY, format="json")
    a_backlog(3600)
    limit(0)
    assert customer_api.post(ORDERS, BODY, format="json").status_code == 201
    limit(7200)
    assert customer_api.post(ORDERS, BODY, format="json").status_code == 201


@pytest.mark.django_db
def test_deliveries_retrying_on_their_schedule_or_held_do_not_count(catalog, customer_api, limit):
    """A receiver that keeps failing, or a dead letter holding an aggregate, never turns orders away."""
    limit(10)
    customer_api.post(ORDERS, BODY, format="json")
    a_backlog(600)
    open_ = list(Delivery.objects.filter(status="pending").values_list("id", flat=True))
    Delivery.objects.filter(id__in=open_[::2]).update(attempts=3)
    Delivery.objects.filter(id__in=open_[1::2]).update(held_by=open_[0])
    admission.forget()
    assert customer_api.post(ORDERS, BODY, format="json").status_code == 201


@pytest.mark.django_db
def test_a_refused_keyed_order_goes_through_when_retried_with_its_key(catalog, customer_api, limit):
    limit(10)
    customer_api.post(ORDERS, BODY, format="json")
    a_backlog(60)
    key = {"HTTP_IDEMPOTENCY_KEY": "after-busy"}
    assert customer_api.post(ORDERS, BODY, format="json", **key).status_code == 503
    Delivery.objects.filter(status="pending").update(status="succeeded", completed_at=timezone.now())
    admission.forget()
    again = customer_api.post(ORDERS, BODY, format="json", **key)
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again
    assert Order.objects.count() == 2
