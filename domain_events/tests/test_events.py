"""Event contracts: registry, exact JSON round trip, CloudEvents envelope, upcasting, load errors."""

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from domain_events.cloudevents import to_cloudevent
from domain_events.events import OrderLine, OrderPlaced, StockAdjusted
from domain_events.registry import EventSchemaError, UnknownEventType, registry
from domain_events.tests.probe.events import ProbeMeasured

CONTRACT_TYPES = {
    "order.placed",
    "inventory.reserved",
    "inventory.reservation_failed",
    "payment.captured",
    "payment.failed",
    "payment.refunded",
    "order.confirmed",
    "order.cancelled",
    "order.fulfilled",
    "inventory.stock_adjusted",
}

money = st.decimals(min_value=0, max_value=Decimal("99999999.99"), places=2, allow_nan=False)
aware_times = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]),
)
lines = st.lists(
    st.builds(
        OrderLine,
        sku=st.text(min_size=1, max_size=20),
        title=st.text(max_size=50),
        quantity=st.integers(min_value=1, max_value=10_000),
        unit_price=money,
    ),
    min_size=1,
    max_size=5,
).map(tuple)


def order_placed(**overrides) -> OrderPlaced:
    values = {
        "tenant_id": uuid.uuid4(),
        "order_id": uuid.uuid4(),
        "customer_id": uuid.uuid4(),
        "lines": (OrderLine(sku="BK-1", title="Dune", quantity=3, unit_price=Decimal("19.99")),),
        "total_amount": Decimal("59.97"),
        "currency": "USD",
        "payment_token": "tok_visa",
        "correlation_id": "req-1",
        "causation_id": uuid.uuid4(),
    }
    values.update(overrides)
    return OrderPlaced(**values)


def test_every_contract_type_is_registered_by_subclassing():
    assert set(registry.types()) >= CONTRACT_TYPES
    assert registry.get("order.placed") is OrderPlaced


def test_events_are_frozen_and_keyword_only():
    event = order_placed()
    with pytest.raises(AttributeError):
        event.currency = "EUR"
    with pytest.raises(TypeError):
        OrderPlaced(uuid.uuid4())


@settings(max_examples=60, deadline=None)
@given(lines=lines, total=money, occurred_at=aware_times, currency=st.sampled_from(["USD", "EUR", "JPY"]))
def test_json_round_trip_is_exact(lines, total, occurred_at, currency):
    event = order_placed(lines=lines, total_amount=total, occurred_at=occurred_at, currency=currency)
    text = json.dumps(registry.dump(event))
    loaded = registry.load("order.placed", 1, json.loads(text))
    assert loaded == event
    assert loaded.occurred_at.utcoffset() == occurred_at.utcoffset()
    assert all(isinstance(line.unit_price, Decimal) for line in loaded.lines)
    assert str(loaded.total_amount) == str(total)


def test_money_is_a_string_in_json_never_a_float():
    data = registry.dump(order_placed())
    assert data["total_amount"] == "59.97"
    assert data["lines"][0]["unit_price"] == "19.99"


def test_cloudevent_passes_the_official_sdk_strict_parser():
    event = replace(order_placed(), actor="staff:7b0c4b7e-3f1a-4e0e-9a52-1a2b3c4d5e6f")
    body = json.dumps(to_cloudevent(event)).encode()
    parsed = JSONFormat().read(CloudEvent, body)
    assert parsed.get_specversion() == "1.0"
    assert parsed.get_id() == str(event.event_id)
    assert parsed.get_source() == f"/tenants/{event.tenant_id}"
    assert parsed.get_type() == "order.placed"
    assert parsed.get_subject() == str(event.order_id)
    assert parsed.get_time() == event.occurred_at
    assert parsed.get_datacontenttype() == "application/json"
    assert parsed.get_extension("tenantid") == str(event.tenant_id)
    assert parsed.get_extension("eventversion") == 1
    assert parsed.get_extension("correlationid") == "req-1"
    assert parsed.get_extension("causationid") == str(event.causation_id)
    assert parsed.get_extension("actor") == "staff:7b0c4b7e-3f1a-4e0e-9a52-1a2b3c4d5e6f"
    data = parsed.get_data()
    assert data["order_id"] == str(event.order_id)
    assert data["total_amount"] == "59.97"
    assert "payment_token" not in data, "private fields never leave the process"
    assert parsed.get_extension("sequence") is None, "no sequence without a position"


def test_a_cloudevent_with_its_position_carries_the_sequence_extension_zero_padded_to_20_digits():
    event = order_placed()
    body = json.dumps(to_cloudevent(event, position=42)).encode()
    parsed = JSONFormat().read(CloudEvent, body)
    assert parsed.get_extension("sequence") == "00000000000000000042"
    assert to_cloudevent(event, position=9)["sequence"] < to_cloudevent(event, position=10)["sequence"]


def test_a_stored_v1_stock_adjusted_is_upcast_to_the_current_version():
    stored_v1 = {"product_id": str(uuid.uuid4()), "sku": "BK-1", "delta": 5, "on_hand": 12}
    envelope = {
        "tenant_id": uuid.uuid4(),
        "event_id": uuid.uuid4(),
        "occurred_at": datetime.now(tz=UTC),
        "correlation_id": "c",
        "causation_id": uuid.uuid4(),
    }
    event = registry.load("inventory.stock_adjusted", 1, stored_v1, envelope=envelope)
    assert isinstance(event, StockAdjusted)
    assert event.version == 2
    assert event.quantity_change == 5
    assert event.reason == "restock"


def test_an_upcaster_chain_runs_every_step_from_v1():
    base = {"probe_id": str(uuid.uuid4())}
    envelope = {"tenant_id": uuid.uuid4()}
    from_v1 = registry.load("probe.measured", 1, {**base, "cm": 7}, envelope=envelope)
    from_v2 = registry.load("probe.measured", 2, {**base, "value_cm": 7}, envelope=envelope)
    current = registry.load("probe.measured", 3, {**base, "value_mm": 70, "unit_note": "mm"}, envelope=envelope)
    assert isinstance(from_v1, ProbeMeasured)
    assert from_v1.value_mm == from_v2.value_mm == current.value_mm == 70


def test_an_unknown_type_is_a_clear_error_naming_the_stored_event():
    with pytest.raises(UnknownEventType, match=r"stored event #9 .*unknown event type 'order.teleported'"):
        registry.load("order.teleported", 1, {}, ref="#9 (order.teleported v1)")


def test_a_payload_that_no_longer_fits_is_a_clear_error():
    with pytest.raises(EventSchemaError, match=r"#3.*total_amount"):
        registry.load("order.confirmed", 1, {"order_id": str(uuid.uuid4()), "currency": "USD"}, ref="#3")
    with pytest.raises(EventSchemaError, match="no upcaster"):
        registry.load("order.confirmed", 0, {}, ref="#4")
    with pytest.raises(EventSchemaError, match="newer than this code"):
        registry.load("order.confirmed", 9, {}, ref="#5")
    with pytest.raises(EventSchemaError, match="not an object"):
        registry.load("order.confirmed", 1, ["x"], ref="#6")
