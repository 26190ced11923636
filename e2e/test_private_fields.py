"""Private event fields (the payment token) are masked wherever a person reads them."""

import pytest

from domain_events.models import Delivery, StoredEvent

pytestmark = [pytest.mark.django_db]


def test_the_payment_token_is_masked_on_every_admin_page_that_shows_the_order_placed_event(
    staff_api, customer_api, staff_admin
):
    assert (
        staff_api.post(
            "/api/v1/products/", {"sku": "BOOK-1", "title": "Emma", "price": "9.50", "stock": 5}, format="json"
        ).status_code
        == 201
    )
    placed = customer_api.post(
        "/api/v1/orders/", {"items": [{"sku": "BOOK-1", "quantity": 1}], "payment_token": "tok_visa"}, format="json"
    )
    assert placed.status_code == 201
    event = StoredEvent.objects.get(type="order.placed")
    assert event.payload["payment_token"] == "tok_visa", "stored as it came: the payment handler needs it"
    delivery = Delivery.objects.filter(stored_event=event).first()
    pages = [
        f"/admin/domain_events/storedevent/{event.pk}/change/",
        f"/admin/domain_events/delivery/{delivery.pk}/change/",
        f"/admin/orders/order/{placed.json()['id']}/change/",
        "/admin/domain_events/storedevent/",
        "/admin/domain_events/delivery/",
    ]
    for page in pages:
        response = staff_admin.get(page)
        assert response.status_code == 200, page
        assert b"tok_visa" not in response.content, page
    assert "••••visa" in staff_admin.get(pages[0]).content.decode()
    timeline = staff_api.get(f"/api/v1/orders/{placed.json()['id']}/events/")
    assert b"tok_visa" not in timeline.content
