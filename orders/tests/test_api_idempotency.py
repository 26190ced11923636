"""`Idempotency-Key` on POST orders/: replay, mismatch, in progress, per user, expiry, release, takeover."""

import json
import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from core.idempotency import request_fingerprint
from core.models import IdempotencyKey
from domain_events.models import StoredEvent
from orders.models import Order
from tenants.tests.factories import UserFactory
from testsupport.processes import wait_until

ORDERS = "/api/v1/orders/"
BODY = {"items": [{"sku": "BOOK-1", "quantity": 2}], "payment_token": "tok_visa"}
OTHER_BODY = {"items": [{"sku": "BOOK-2", "quantity": 1}], "payment_token": "tok_visa"}


def place(client, body, key: str | None = "key-1"):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(ORDERS, body, format="json", **headers)


@pytest.mark.django_db
def test_the_same_key_and_body_replay_the_first_response_without_a_second_order(catalog, customer_api):
    first = place(customer_api, BODY)
    again = place(customer_api, BODY)

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert Order.objects.count() == 1
    assert StoredEvent.objects.filter(type="order.placed").count() == 1
    assert len(catalog.questions) == 1


@pytest.mark.django_db
def test_the_replay_is_the_first_response_even_after_the_order_moved_on(catalog, customer_api):
    first = place(customer_api, BODY)
    Order.objects.update(status=Order.Status.CONFIRMED)
    again = place(customer_api, BODY)
    assert again.json()["status"] == "placed"
    assert again.json() == first.json()


@pytest.mark.django_db
def test_the_body_is_compared_as_json_not_as_bytes(catalog, customer_api):
    place(customer_api, BODY)
    reordered = json.dumps({"payment_token": "tok_visa", "items": [{"quantity": 2, "sku": "BOOK-1"}]}, indent=4)
    again = customer_api.generic(
        "POST", ORDERS, reordered, content_type="application/json", HTTP_IDEMPOTENCY_KEY="key-1"
    )
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert Order.objects.count() == 1


@pytest.mark.django_db
def test_the_same_key_with_another_body_is_a_422(catalog, customer_api):
    place(customer_api, BODY)
    response = place(customer_api, OTHER_BODY)
    assert response.status_code == 422
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "unprocessable"
    assert "another request" in response.json()["detail"]
    assert Order.objects.count() == 1


@pytest.mark.django_db
def test_keys_are_per_user(catalog, customer_api, api_client_for, tenant):
    neighbour = api_client_for(UserFactory(tenant=tenant, username="dave"))
    assert place(customer_api, BODY).status_code == 201
    second = place(neighbour, BODY)
    assert second.status_code == 201
    assert "Idempotent-Replayed" not in second
    assert Order.objects.count() == 2


@pytest.mark.django_db
def test_a_key_expires_after_24_hours(catalog, customer_api):
    first = place(customer_api, BODY)
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=24, minutes=1))
    later = place(customer_api, OTHER_BODY)
    assert later.status_code == 201
    assert later.json()["id"] != first.json()["id"]
    assert Order.objects.count() == 2


@pytest.mark.django_db
def test_without_a_key_every_request_places_an_order(catalog, customer_api):
    place(customer_api, BODY, key=None)
    place(customer_api, BODY, key=None)
    assert Order.objects.count() == 2
    assert not IdempotencyKey.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("bad_body", "status"),
    [
        ({"items": [{"sku": "BOOK-1", "quantity": 0}], "payment_token": "tok_visa"}, 400),  # refused by the serializer
        ({"items": [{"sku": "NOPE", "quantity": 1}], "payment_token": "tok_visa"}, 400),  # refused by the service
    ],
    ids=["invalid", "unknown_sku"],
)
def test_a_refused_request_releases_its_key(catalog, customer_api, bad_body, status):
    assert place(customer_api, bad_body).status_code == status
    assert not IdempotencyKey.objects.exists()
    fixed = place(customer_api, BODY)
    assert fixed.status_code == 201
    assert Order.objects.count() == 1


@pytest.mark.django_db
def test_an_unusable_key_is_a_400(catalog, customer_api):
    response = place(customer_api, BODY, key="k" * 256)
    assert response.status_code == 400
    assert "idempotency_key" in response.json()
    assert not Order.objects.exists()


@pytest.mark.django_db
def test_a_stale_claim_of_a_crashed_request_is_taken_over(catalog, customer_api, customer):
    crashed_at = timezone.now() - timedelta(seconds=90)
    IdempotencyKey.objects.create(
        user=customer,
        key="key-1",
        fingerprint=request_fingerprint(method="POST", path=ORDERS, body=BODY),
        created_at=crashed_at,
        locked_at=crashed_at,
    )
    response = place(customer_api, BODY)
    assert response.status_code == 201
    assert Order.objects.count() == 1
    record = IdempotencyKey.objects.get()
    assert record.state == IdempotencyKey.State.COMPLETED
    assert record.response_body == response.json()


@pytest.mark.django_db
def test_a_recent_claim_of_a_request_whose_session_ended_is_taken_over_at_once(catalog, customer_api, customer):
    now = timezone.now()
    IdempotencyKey.objects.create(
        user=customer,
        key="key-1",
        fingerprint=request_fingerprint(method="POST", path=ORDERS, body=BODY),
        created_at=now,
        locked_at=now - timedelta(seconds=1),
    )
    response = place(customer_api, BODY)
    assert response.status_code == 201
    assert Order.objects.count() == 1
    assert IdempotencyKey.objects.get().state == IdempotencyKey.State.COMPLETED


@pytest.mark.django_db(transaction=True)
def test_a_second_request_while_the_first_is_in_progress_is_a_409(catalog, customer_api, api_client_for, customer):
    first_may_finish = threading.Event()
    held: list[bool] = []

    def hold_the_first_request(query) -> None:
        if not held:
            held.append(True)
            assert first_may_finish.wait(20), "the first request was never released"

    catalog.before_answer = hold_the_first_request
    first_response = {}

    def first_request() -> None:
        try:
            first_response["response"] = place(api_client_for(customer), BODY)
        finally:
            connections.close_all()

    thread = threading.Thread(target=first_request)
    thread.start()
    try:
        wait_until(lambda: held, timeout=10, what="the first request to be in progress")
        assert IdempotencyKey.objects.get().state == IdempotencyKey.State.IN_PROGRESS

        concurrent = place(customer_api, BODY)
        assert concurrent.status_code == 409
        assert concurrent["Content-Type"] == "application/json"
        assert "in progress" in concurrent.json()["idempotency_key"][0]
    finally:
        first_may_finish.set()
        thread.join(20)

    first = first_response["response"]
    assert first.status_code == 201
    replay = place(customer_api, BODY)
    assert replay.status_code == 201
    assert replay.json() == first.json()
    assert Order.objects.count() == 1
