"""X-Request-ID: the correlation id of what a request publishes, echoed in the response."""

import uuid
from uuid import UUID

import pytest
from django.db import transaction
from django.http import HttpResponse
from django.test import RequestFactory

from domain_events.bus import event_bus
from domain_events.middleware import CorrelationIdMiddleware
from domain_events.models import StoredEvent
from domain_events.tests.probe.events import ProbeHappened

pytestmark = pytest.mark.django_db(transaction=True)


def publishing_view(request):
    with transaction.atomic():
        event_bus.publish(ProbeHappened(tenant_id=uuid.uuid4(), probe_id=uuid.uuid4(), n=1))
    return HttpResponse("ok")


def test_a_request_id_becomes_the_correlation_id_and_comes_back():
    request = RequestFactory().post("/", HTTP_X_REQUEST_ID="req-7f3a")
    response = CorrelationIdMiddleware(publishing_view)(request)
    assert response["X-Request-ID"] == "req-7f3a"
    assert StoredEvent.objects.get().correlation_id == "req-7f3a"


def test_without_a_request_id_a_new_one_is_made_and_returned():
    response = CorrelationIdMiddleware(publishing_view)(RequestFactory().post("/"))
    generated = response["X-Request-ID"]
    assert UUID(generated)
    assert StoredEvent.objects.get().correlation_id == generated


def test_an_unsafe_request_id_is_replaced():
    request = RequestFactory().post("/", HTTP_X_REQUEST_ID="<script>" + "x" * 300)
    response = CorrelationIdMiddleware(publishing_view)(request)
    assert UUID(response["X-Request-ID"])


def test_the_header_is_on_real_responses(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="probe-1")
    assert response["X-Request-ID"] == "probe-1"
