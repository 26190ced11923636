"""An order's events reach a distributor's webhook receiver, signed, as CloudEvents, in position
order, through the orders API with a real worker and relay, even when the first one fails twice."""

import pytest

from e2e.helpers import published
from testsupport.processes import wait_until
from webhooks.tests.receiver import Receiver, running

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ENV = {"WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true", "WEBHOOK_RETRY_SCHEDULE": "1,1,1"}
ORDER_EVENTS = ["order.placed", "inventory.reserved", "order.confirmed"]


def test_an_orders_events_reach_the_receiver_in_position_order_though_the_first_fails_twice(
    processes, settings, staff_api, customer_api
):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    processes.worker(concurrency=3, **ENV)
    processes.relay(**ENV)
    with running(Receiver(fail_first={"order.placed": 2})) as receiver:
        response = staff_api.post(
            "/api/v1/webhook-endpoints/", {"url": receiver.url, "event_types": ORDER_EVENTS}, format="json"
        )
        assert response.status_code == 201, response.content
        secret = response.json()["secret"]
        assert (
            staff_api.post(
                "/api/v1/products/", {"sku": "BOOK-1", "title": "Dune", "price": "9.99", "stock": 5}, format="json"
            ).status_code
            == 201
        )
        placed = customer_api.post(
            "/api/v1/orders/", {"items": [{"sku": "BOOK-1", "quantity": 1}], "payment_token": "tok_visa"}, format="json"
        )
        assert placed.status_code == 201, placed.content
        order_id = placed.json()["id"]

        def confirmed_delivered() -> bool:
            return any(r.verified(secret).get_type() == "order.confirmed" for r in receiver.received)

        wait_until(confirmed_delivered, timeout=60, what="order.confirmed at the receiver")

    events = receiver.events(secret)
    assert [e.get_type() for e in events][:2] == ["order.placed", "order.placed"], "the first failed twice"
    delivered = [e for e in events if e.get_subject() == order_id]
    firsts: list[str] = []
    for event in delivered:
        if event.get_id() not in firsts:
            firsts.append(event.get_id())
    stored = sorted((e for t in ORDER_EVENTS for e in published(t, order_id)), key=lambda e: e.position)
    assert firsts == [str(e.event_id) for e in stored], (
        "each event reached the receiver only after every earlier one of its order"
    )
    sequences = [e.get_extension("sequence") for e in delivered]
    assert sequences == sorted(sequences)
    assert len({r.webhook_id for r in receiver.received if r.verified(secret).get_type() == "order.placed"}) == 1
