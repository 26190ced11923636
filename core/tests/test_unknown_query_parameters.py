"""One rule for every list: an unknown query parameter is a 400 that names it."""

import pytest

pytestmark = pytest.mark.django_db

API = "/api/v1"


@pytest.fixture
def lists(staff_api, staff):
    endpoint = staff_api.post(
        f"{API}/webhook-endpoints/", {"url": "https://erp.example.com/hooks", "event_types": []}, format="json"
    ).json()
    return [
        f"{API}/products/",
        f"{API}/orders/",
        f"{API}/events/",
        f"{API}/webhook-endpoints/",
        f"{API}/webhook-endpoints/{endpoint['id']}/deliveries/",
    ]


def test_every_list_refuses_an_unknown_query_parameter_naming_it(staff_api, lists):
    for url in lists:
        assert staff_api.get(url).status_code == 200, url
        response = staff_api.get(url, {"sttaus": "placed"})
        assert response.status_code == 400, url
        assert response.json()["sttaus"] == ["Unknown field."], url


def test_the_documented_page_parameter_is_still_taken(staff_api, lists):
    assert staff_api.get(f"{API}/products/", {"page": 1}).status_code == 200
