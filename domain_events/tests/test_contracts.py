"""Published event contracts: each event class against the committed schema of its version, every
past version's schema and example kept, and every example loading into the current class."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar
from uuid import UUID

import pytest
from django.core.management import CommandError, call_command
from jsonschema import Draft202012Validator

from domain_events import schemas
from domain_events.cloudevents import CLOUDEVENT_SCHEMA, to_cloudevent
from domain_events.events import DomainEvent, published_event_types
from domain_events.recording import payload_of
from domain_events.registry import registry
from domain_events.schemas import (
    UnknownContract,
    committed_example,
    contract_problems,
    data_schema,
    schema_for,
)

ENVELOPE = {
    "tenant_id": "8f14e45f-ceea-467f-a0e6-0b5b6f1c2d3e",
    "event_id": "45c48cce-2e2d-4fbd-a8b3-6d2f0a1c9e7b",
    "occurred_at": "2026-11-24T15:02:11.482913Z",
    "correlation_id": "req-7f3a",
    "causation_id": "45c48cce-2e2d-4fbd-a8b3-6d2f0a1c9e7b",
}


def every_version() -> list[tuple[str, int]]:
    return [(cls.type, v) for cls in published_event_types() for v in range(1, cls.version + 1)]


def changed(base: type[DomainEvent], *, version: int | None = None, **fields: type) -> type[DomainEvent]:
    """`base` with extra fields, standing for an edit of the class (a subclass without its own
    `type`, so the registry never sees it)."""
    cls = dataclass(frozen=True, kw_only=True)(type(base.__name__, (base,), {"__annotations__": dict(fields)}))
    if version is not None:
        cls.version = version
    return cls


def test_every_published_event_matches_the_committed_contract_of_its_version():
    assert contract_problems() == []


def test_a_published_event_that_changes_shape_without_a_new_version_is_caught():
    from domain_events.events import OrderConfirmed

    with_a_new_field = changed(OrderConfirmed, note=str)
    [problem] = contract_problems([with_a_new_field])
    assert problem.startswith("order.confirmed v1: the class no longer matches its committed schema")
    assert "raise OrderConfirmed.version, register an upcaster from v1" in problem


def test_a_new_version_needs_an_upcaster_its_schema_and_an_example():
    from domain_events.events import OrderConfirmed

    problems = contract_problems([changed(OrderConfirmed, version=2, note=str)])
    assert any(p.startswith("order.confirmed v2: no committed schema") for p in problems)
    assert "order.confirmed v1: no upcaster to v2" in problems
    assert any(p.startswith("order.confirmed v2: no example payload") for p in problems)


def test_rewording_a_docstring_or_reordering_fields_is_no_change_of_shape():
    @dataclass(frozen=True, kw_only=True)
    class Reworded(DomainEvent):
        """Different words, the same fields in another order."""

        aggregate_field: ClassVar[str] = "order_id"

        currency: str
        total_amount: Decimal
        order_id: UUID

    Reworded.type = "order.confirmed"
    assert contract_problems([Reworded]) == []


@pytest.mark.parametrize(("type_name", "version"), every_version())
def test_every_stored_example_of_every_version_fits_its_schema_and_loads_into_the_current_class(type_name, version):
    example = committed_example(type_name, version)
    Draft202012Validator(schema_for(type_name, version), format_checker=Draft202012Validator.FORMAT_CHECKER).validate(
        example
    )
    event = registry.load(type_name, version, example, envelope=ENVELOPE)
    current = registry.get(type_name)
    assert type(event) is current
    if version == current.version:
        assert payload_of(event) == example, "the example is exactly what the current class stores"


@pytest.mark.parametrize("cls", published_event_types(), ids=lambda c: c.type)
def test_the_cloudevent_of_every_example_fits_the_published_schemas(cls):
    event = registry.load(cls.type, cls.version, committed_example(cls.type, cls.version), envelope=ENVELOPE)
    cloudevent = to_cloudevent(event, position=7)
    Draft202012Validator(CLOUDEVENT_SCHEMA).validate(cloudevent)
    published = data_schema(cls.type, cls.version)
    Draft202012Validator(published).validate(cloudevent["data"])
    assert set(published["properties"]).isdisjoint(cls.private_fields)
    assert "x-private-fields" not in published


def test_a_past_version_keeps_its_own_schema_and_unknown_ones_are_refused():
    v1 = schema_for("inventory.stock_adjusted", 1)
    v2 = schema_for("inventory.stock_adjusted", 2)
    assert "delta" in v1["properties"]
    assert "quantity_change" in v2["properties"]
    assert "reason" not in v1["properties"]
    with pytest.raises(UnknownContract):
        schema_for("inventory.stock_adjusted", 3)
    with pytest.raises(UnknownContract):
        schema_for("probe.happened", 1)  # a test probe is not a contract event
    assert "payment_token" in schema_for("order.placed", 1)["properties"], "stored"
    assert "payment_token" not in data_schema("order.placed", 1)["properties"], "never published"


def test_the_command_checks_the_contracts_and_writes_only_missing_schemas(tmp_path, monkeypatch, capsys):
    contracts = tmp_path / "contracts"
    shutil.copytree(schemas.CONTRACTS_DIR, contracts)
    monkeypatch.setattr(schemas, "CONTRACTS_DIR", contracts)
    call_command("event_contracts")
    assert "matches its contract" in capsys.readouterr().out

    edited = contracts / "order.confirmed" / "v1.schema.json"
    edited.write_text(edited.read_text().replace('"currency"', '"currency_code"'))
    with pytest.raises(CommandError, match=r"order\.confirmed v1: the class no longer matches"):
        call_command("event_contracts", "--write")
    assert '"currency_code"' in edited.read_text(), "a committed version is never overwritten"

    (contracts / "order.placed" / "v1.schema.json").unlink()
    with pytest.raises(CommandError):
        call_command("event_contracts", "--write")
    assert "wrote" in capsys.readouterr().out
    assert (contracts / "order.placed" / "v1.schema.json").is_file()
