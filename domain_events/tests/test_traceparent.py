"""The trace context stored with each event (`core.tracing`): null and free with tracing off; kept,
read back with the envelope and published as the CloudEvents `traceparent` extension when an event
has one. (Tracing on, across processes: `e2e/test_order_trace.py`.)"""

import json
import uuid

import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from django.db import transaction
from jsonschema import Draft202012Validator
from opentelemetry import trace

from core import tracing
from domain_events import tracking
from domain_events.bus import event_bus
from domain_events.cloudevents import CLOUDEVENT_SCHEMA, to_cloudevent
from domain_events.models import StoredEvent
from domain_events.parking import READ, load_or_park
from domain_events.tests.probe.events import ProbeHappened

pytestmark = pytest.mark.django_db(transaction=True)

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def publish(**envelope) -> ProbeHappened:
    with transaction.atomic():
        return event_bus.publish(ProbeHappened(tenant_id=uuid.uuid4(), probe_id=uuid.uuid4(), n=1, **envelope))


def stored_traceparent(event) -> str | None:
    return StoredEvent.objects.values_list("traceparent", flat=True).get(event_id=event.event_id)


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "shelfwise"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_tracing_is_on_only_with_an_otlp_endpoint_and_not_turned_off(environ, on):
    assert tracing.configured(environ) is on


def test_with_tracing_off_nothing_is_set_up_stored_or_published(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert tracing.setup("test") is False
    assert not isinstance(trace.get_tracer_provider(), _sdk_provider()), "no tracer provider was set up"
    event = publish()
    assert event.traceparent is None
    assert stored_traceparent(event) is None
    assert "traceparent" not in to_cloudevent(event, position=1)
    assert tracing.current_traceparent() is None
    with tracing.handler_span("probe", traceparent=TRACEPARENT, attributes={}) as span:
        assert span is None, "no span is opened"


def _sdk_provider() -> type:
    from opentelemetry.sdk.trace import TracerProvider

    return TracerProvider


def test_an_events_traceparent_is_stored_read_back_and_published_as_the_cloudevents_extension():
    event = publish(traceparent=TRACEPARENT)
    assert stored_traceparent(event) == TRACEPARENT
    tracking.catch_up("probe.tracker")
    [row] = StoredEvent.objects.filter(event_id=event.event_id).values_list(*READ)
    [(_, loaded)] = load_or_park("probe.tracker", [row])
    assert loaded.traceparent == TRACEPARENT
    cloudevent = to_cloudevent(loaded, position=5)
    assert cloudevent["traceparent"] == TRACEPARENT
    Draft202012Validator(CLOUDEVENT_SCHEMA).validate(cloudevent)
    parsed = JSONFormat().read(CloudEvent, json.dumps(cloudevent).encode())
    assert parsed.get_extension("traceparent") == TRACEPARENT
    with pytest.raises(Exception, match="does not match"):
        Draft202012Validator(CLOUDEVENT_SCHEMA).validate({**cloudevent, "traceparent": "not a trace"})
