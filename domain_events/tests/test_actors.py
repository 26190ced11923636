"""Who caused each event: set at the boundary, inherited through causation, stored beside the
payload, read back with the envelope, and published as the CloudEvents extension `actor`."""

import json
import uuid

import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from django.db import connection, transaction
from jsonschema import Draft202012Validator

from domain_events import tracking
from domain_events.actors import SYSTEM, actor_of, is_actor
from domain_events.bus import event_bus
from domain_events.cloudevents import CLOUDEVENT_SCHEMA, to_cloudevent
from domain_events.context import acting_as, current_trace, traced
from domain_events.models import StoredEvent
from domain_events.parking import READ, load_or_park
from domain_events.relay import Relay
from domain_events.tests.probe.events import ProbeHappened
from tenants.tests.factories import TenantFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

STAFF = f"staff:{uuid.uuid4()}"


def publish(n: int = 1) -> ProbeHappened:
    with transaction.atomic():
        return event_bus.publish(ProbeHappened(tenant_id=uuid.uuid4(), probe_id=uuid.uuid4(), n=n))


def stored_actor(event) -> str:
    return StoredEvent.objects.values_list("actor", flat=True).get(event_id=event.event_id)


def test_a_user_is_a_customer_staff_or_an_operator_and_nobody_is_the_system():
    tenant = TenantFactory()
    customer = UserFactory(tenant=tenant)
    staff = UserFactory(tenant=tenant, is_staff=True)
    operator = UserFactory(tenant=None, is_staff=True, is_superuser=True)
    assert actor_of(customer) == f"customer:{customer.pk}"
    assert actor_of(staff) == f"staff:{staff.pk}"
    assert actor_of(operator) == f"operator:{operator.pk}"
    assert actor_of(None) == SYSTEM
    assert all(is_actor(a) for a in (actor_of(customer), actor_of(staff), actor_of(operator), SYSTEM))
    assert not is_actor("staff:")
    assert not is_actor("robot:1")


def test_what_nobody_asked_for_is_the_systems_and_the_boundary_names_who_did():
    assert stored_actor(publish()) == SYSTEM
    with acting_as(STAFF):
        event = publish()
    assert event.actor == STAFF
    assert stored_actor(event) == STAFF
    assert current_trace() is None, "the actor ends with its block"


def test_acting_as_keeps_the_current_correlation_and_causation():
    cause = uuid.uuid4()
    with traced("req-7", causation_id=cause), acting_as(STAFF):
        trace = current_trace()
    assert (trace.correlation_id, trace.causation_id, trace.actor) == ("req-7", cause, STAFF)


def test_a_request_reads_its_actor_when_it_publishes():
    """The request's user is known only after the view authenticated it."""
    user = None
    with traced("req-8", actor=lambda: actor_of(user)):
        user = UserFactory(tenant=TenantFactory())
        event = publish()
    assert event.actor == f"customer:{user.pk}"


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast path", "relay"])
def test_a_handlers_events_have_the_actor_of_the_event_that_caused_them(settings, fast_path):
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": fast_path}
    with acting_as(STAFF):
        cause = publish(n=1000)  # probe.followed publishes a follow-up
    Relay().drain()
    follow_up = StoredEvent.objects.get(type="probe.followed_up")
    assert follow_up.causation_id == cause.event_id
    assert follow_up.actor == STAFF


def test_the_actor_is_read_back_with_the_envelope_by_position_readers():
    with acting_as(STAFF):
        event = publish()
    tracking.catch_up("probe.tracker")
    [row] = StoredEvent.objects.filter(event_id=event.event_id).values_list(*READ)
    [(_, loaded)] = load_or_park("probe.tracker", [row])
    assert loaded.actor == STAFF


def test_an_insert_that_names_no_actor_records_the_system():
    """A publisher still running code from before actors (a rolling deploy) keeps working."""
    event = publish()
    columns = "event_id, type, version, tenant_id, aggregate_id, occurred_at, recorded_at, correlation_id, causation_id"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO domain_events_storedevent ({columns}, payload) "  # noqa: S608
            f"SELECT %s, type, version, tenant_id, aggregate_id, occurred_at, recorded_at, correlation_id, "
            f"causation_id, payload FROM domain_events_storedevent WHERE event_id = %s",
            [uuid.uuid4(), event.event_id],
        )
    assert set(StoredEvent.objects.values_list("actor", flat=True)) == {SYSTEM}


def test_every_cloudevent_carries_the_actor_extension_which_the_sdk_parses_strictly():
    with acting_as(STAFF):
        event = publish()
    cloudevent = to_cloudevent(event, position=3)
    assert cloudevent["actor"] == STAFF
    Draft202012Validator(CLOUDEVENT_SCHEMA).validate(cloudevent)
    assert "actor" in CLOUDEVENT_SCHEMA["required"]
    parsed = JSONFormat().read(CloudEvent, json.dumps(cloudevent).encode())
    assert parsed.get_extension("actor") == STAFF
    with pytest.raises(Exception, match="does not match"):
        Draft202012Validator(CLOUDEVENT_SCHEMA).validate({**cloudevent, "actor": "somebody"})
