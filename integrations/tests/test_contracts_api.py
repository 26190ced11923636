"""The published contracts over HTTP, beside the OpenAPI document: the AsyncAPI 3 document (valid
against the official schema of AsyncAPI 3.0.0) and a JSON Schema per event type and version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft7Validator
from rest_framework.test import APIClient

from domain_events.events import published_event_types
from domain_events.schemas import data_schema

ASYNCAPI_3_SCHEMA = Path(__file__).parent / "asyncapi" / "3.0.0-without-id.json"


@pytest.fixture
def anyone() -> APIClient:
    return APIClient()


def resolve(document: dict, ref: str) -> object:
    node: object = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs_in(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for v in node.values() for r in refs_in(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs_in(v)]
    return []


def test_the_asyncapi_document_is_valid_asyncapi_3_and_describes_every_published_event(anyone):
    response = anyone.get("/api/v1/asyncapi.json")
    assert response.status_code == 200
    document = response.json()
    errors = [e.message for e in Draft7Validator(json.loads(ASYNCAPI_3_SCHEMA.read_text())).iter_errors(document)]
    assert errors == []
    assert document["asyncapi"] == "3.0.0"
    for ref in refs_in(document):
        assert resolve(document, ref) is not None, ref

    types = {cls.type: cls for cls in published_event_types()}
    assert {c["address"] for c in document["channels"].values()} == set(types)
    for name, channel in document["channels"].items():
        exchange = channel["bindings"]["amqp"]["exchange"]
        assert (exchange["name"], exchange["type"]) == ("shelfwise.events", "topic")
        message = resolve(document, channel["messages"][name]["$ref"])
        cls = types[channel["address"]]
        assert message["contentType"] == "application/cloudevents+json"
        data_ref = message["payload"]["allOf"][1]["properties"]["data"]["$ref"]
        published = data_schema(cls.type, cls.version)
        assert set(resolve(document, data_ref)["properties"]) == set(published["properties"])
    operations = document["operations"].values()
    assert {op["action"] for op in operations} == {"send"}
    assert {op["bindings"]["amqp"]["deliveryMode"] for op in operations} == {2}, "persistent"
    placed = resolve(document, "#/components/schemas/OrderPlacedData")
    assert "payment_token" not in placed["properties"], "private fields are not part of the contract"
    envelope = resolve(document, "#/components/schemas/CloudEvent")
    assert "actor" in envelope["required"]
    assert "staff" in envelope["properties"]["actor"]["description"]
    assert "actor" not in placed["properties"], "the actor is the envelope's, not the data's"


@pytest.mark.parametrize("cls", published_event_types(), ids=lambda c: c.type)
def test_each_current_schema_is_served_by_type_and_version(anyone, cls):
    response = anyone.get(f"/api/v1/events/schemas/{cls.type}/{cls.version}.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/schema+json"
    assert response.json() == json.loads(json.dumps(data_schema(cls.type, cls.version)))
    assert response.json()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_past_versions_are_served_and_unknown_ones_are_a_json_404(anyone):
    v1 = anyone.get("/api/v1/events/schemas/inventory.stock_adjusted/1.json")
    assert v1.status_code == 200
    assert set(v1.json()["required"]) == {"product_id", "sku", "delta", "on_hand"}
    for path in ("inventory.stock_adjusted/3.json", "inventory.stock_adjusted/0.json", "probe.happened/1.json"):
        response = anyone.get(f"/api/v1/events/schemas/{path}")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


@pytest.mark.django_db
def test_the_openapi_document_lists_the_event_contracts(anyone):
    response = anyone.get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/asyncapi.json" in paths
    assert "/api/v1/events/schemas/{type_name}/{version}.json" in paths
