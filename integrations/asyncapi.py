"""The AsyncAPI 3 document of the integration exchange, generated from the event classes."""

from __future__ import annotations

from typing import Any

from domain_events.cloudevents import CLOUDEVENT_SCHEMA, CONTENT_TYPE
from domain_events.events import DomainEvent, published_event_types
from domain_events.schemas import data_schema
from integrations.transport import EXCHANGE, PERSISTENT

AMQP_BINDING_VERSION = "0.3.0"

DESCRIPTION = (
    "Every event of every bookstore, as a CloudEvents 1.0 structured JSON message, published to the "
    f"RabbitMQ topic exchange `{EXCHANGE.name}` with the event type as routing key (bind `order.*`, "
    "`payment.*`, `#`) and the event id as message id, in the order of recording (`sequence`). Delivery "
    "is at least once: drop repeats by message id. Each message names who caused it (`actor`: "
    "`customer:<user id>`, `staff:<user id>`, `operator:<user id>` or `system`). The same CloudEvents are "
    "the webhook bodies and the "
    "`GET /api/v1/events/` feed. The JSON Schema of each version of `data` is served at "
    "`/api/v1/events/schemas/{type}/{version}.json`, past versions included."
)


def asyncapi_document() -> dict[str, Any]:
    """The whole document: a channel (routing key), a send operation and a message per event type."""
    schemas: dict[str, Any] = {"CloudEvent": CLOUDEVENT_SCHEMA}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for cls in published_event_types():
        name = cls.__name__
        data = data_schema(cls.type, cls.version)
        data.pop("$schema", None)
        for def_name, definition in data.pop("$defs", {}).items():
            schemas.setdefault(def_name, _rerooted(definition))
        schemas[f"{name}Data"] = _rerooted(data)
        messages[name] = _message(cls)
        channels[name] = {
            "address": cls.type,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {"name": EXCHANGE.name, "type": "topic", "durable": True, "autoDelete": False},
                    "bindingVersion": AMQP_BINDING_VERSION,
                }
            },
        }
        operations[f"publish{name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{name}"},
            "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
            "bindings": {"amqp": {"deliveryMode": PERSISTENT, "bindingVersion": AMQP_BINDING_VERSION}},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "ShelfWise events", "version": "1.0.0", "description": DESCRIPTION},
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def _message(cls: type[DomainEvent]) -> dict[str, Any]:
    message: dict[str, Any] = {
        "name": cls.type,
        "title": f"{cls.type} v{cls.version}",
        "contentType": CONTENT_TYPE,
        "correlationId": {"location": "$message.payload#/correlationid"},
        "payload": {
            "allOf": [
                {"$ref": "#/components/schemas/CloudEvent"},
                {
                    "type": "object",
                    "properties": {
                        "type": {"const": cls.type},
                        "eventversion": {"const": cls.version},
                        "data": {"$ref": f"#/components/schemas/{cls.__name__}Data"},
                    },
                },
            ]
        },
        "bindings": {
            "amqp": {"contentEncoding": "utf-8", "messageType": cls.type, "bindingVersion": AMQP_BINDING_VERSION}
        },
    }
    summary = _summary(cls)
    if summary:
        message["summary"] = summary
    return message


def _summary(cls: type) -> str:
    """The first line of the class's own docstring (dataclasses make one from the signature)."""
    doc = cls.__dict__.get("__doc__") or ""
    if not doc or doc.startswith(f"{cls.__name__}("):
        return ""
    return doc.strip().splitlines()[0]


def _rerooted(schema: Any) -> Any:
    """`schema` with its `#/$defs/…` references pointing into the document's components."""
    if isinstance(schema, dict):
        return {
            k: (v.replace("#/$defs/", "#/components/schemas/") if k == "$ref" else _rerooted(v))
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_rerooted(v) for v in schema]
    return schema
