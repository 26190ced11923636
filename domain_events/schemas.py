"""The published event contracts: a JSON Schema per (event type, version), from the event classes.

Every version of every contract event has two committed files in `contracts/<type>/`:
`v<N>.schema.json`, the schema of the event's own fields as stored (its private fields named in
`x-private-fields`), and `v<N>.example.json`, a stored payload of that version. The current
version's schema is generated from its class and must equal its committed file
(`contract_problems`, checked by a test and by `manage.py event_contracts`). So an event whose
fields change needs a new `version`, the upcaster from the one before and the new version's files
(`manage.py event_contracts --write` writes the schema), while the old files stay: every past
example must still load through the upcasters into the current class.

What leaves the process (`data_schema`) is the stored schema without the private fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from domain_events.events import ENVELOPE_FIELDS, DomainEvent, published_event_types
from domain_events.registry import registry

CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
PRIVATE = "x-private-fields"

Schema = dict[str, Any]


class UnknownContract(LookupError):
    """No published event type of that name, or no such version of it."""


def contract_path(type_name: str, version: int, kind: str) -> Path:
    """`kind` is "schema" or "example"."""
    return CONTRACTS_DIR / type_name / f"v{version}.{kind}.json"


def stored_schema(cls: type[DomainEvent]) -> Schema:
    """The JSON Schema of `cls`'s own fields as stored (the envelope is kept beside them).

    Docstrings are left out, so rewording one is not a change of shape; so is the order of fields.
    """
    generated = TypeAdapter(cls).json_schema(mode="serialization")
    schema = _plain(generated)
    schema["properties"] = {k: v for k, v in schema["properties"].items() if k not in ENVELOPE_FIELDS}
    schema["required"] = [k for k in schema.get("required", []) if k not in ENVELOPE_FIELDS]
    schema["title"] = f"{cls.type} v{cls.version}"
    schema[PRIVATE] = sorted(cls.private_fields)
    return {"$schema": DIALECT, **schema}


def committed_schema(type_name: str, version: int) -> Schema | None:
    return _read(contract_path(type_name, version, "schema"))


def committed_example(type_name: str, version: int) -> dict[str, Any] | None:
    return _read(contract_path(type_name, version, "example"))


def schema_for(type_name: str, version: int) -> Schema:
    """The stored schema of one version: the class's for the current version, the committed file's
    for an earlier one."""
    cls = _published(type_name)
    if version == cls.version:
        return stored_schema(cls)
    schema = committed_schema(type_name, version) if 1 <= version < cls.version else None
    if schema is None:
        raise UnknownContract(f"{type_name} has no version {version} (current: {cls.version})")
    return schema


def data_schema(type_name: str, version: int) -> Schema:
    """The JSON Schema of a CloudEvent's `data` for one version: what integrators receive."""
    schema = dict(schema_for(type_name, version))
    private = set(schema.pop(PRIVATE, []))
    schema["properties"] = {k: v for k, v in schema["properties"].items() if k not in private}
    schema["required"] = [k for k in schema["required"] if k not in private]
    schema["title"] = f"{type_name} v{version}: CloudEvent data"
    return schema


def contract_problems(classes: list[type[DomainEvent]] | None = None) -> list[str]:
    """Everything that breaks the versioning rule, one sentence each (empty when all is well)."""
    problems: list[str] = []
    for cls in published_event_types() if classes is None else classes:
        name, current = cls.type, cls.version
        committed = committed_schema(name, current)
        if committed is None:
            problems.append(f"{name} v{current}: no committed schema ({_relative(name, current, 'schema')})")
        elif committed != stored_schema(cls):
            problems.append(
                f"{name} v{current}: the class no longer matches its committed schema; a published version "
                f"never changes: raise {cls.__name__}.version, register an upcaster from v{current} and commit "
                f"the new version's schema and example"
            )
        for version in range(1, current + 1):
            if version < current and committed_schema(name, version) is None:
                problems.append(f"{name} v{version}: its schema is gone ({_relative(name, version, 'schema')})")
            if committed_example(name, version) is None:
                problems.append(f"{name} v{version}: no example payload ({_relative(name, version, 'example')})")
            if version < current and registry.upcaster_for(name, version) is None:
                problems.append(f"{name} v{version}: no upcaster to v{version + 1}")
        later = committed_schema(name, current + 1)
        if later is not None:
            problems.append(f"{name} v{current + 1} is committed but the class is still at v{current}")
    return problems


def write_current_schemas() -> list[Path]:
    """Write the committed schema of each current version that has none; returns what it wrote.

    Never overwrites: a version, once committed, is a published contract.
    """
    written = []
    for cls in published_event_types():
        path = contract_path(cls.type, cls.version, "schema")
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(stored_schema(cls), indent=2, sort_keys=True) + "\n")
            written.append(path)
    return written


def _published(type_name: str) -> type[DomainEvent]:
    found = {cls.type: cls for cls in published_event_types()}.get(type_name)
    if found is None:
        raise UnknownContract(f"no published event type {type_name!r}")
    return found


def _relative(type_name: str, version: int, kind: str) -> str:
    return str(contract_path(type_name, version, kind).relative_to(CONTRACTS_DIR.parent.parent))


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


# Keywords whose value is a schema, a list of schemas or a map of schemas (JSON Schema 2020-12).
_SCHEMA_MAPS = frozenset({"properties", "$defs", "patternProperties"})
_SCHEMA_LISTS = frozenset({"anyOf", "allOf", "oneOf", "prefixItems"})
_SCHEMAS = frozenset({"items", "additionalProperties", "not"})


def _plain(schema: Any) -> Any:
    """`schema` without descriptions, with `required` in a stable order."""
    if not isinstance(schema, dict):
        return schema
    plain = {}
    for key, value in schema.items():
        if key == "description":
            continue
        if key in _SCHEMA_MAPS:
            value = {k: _plain(v) for k, v in value.items()}
        elif key in _SCHEMA_LISTS:
            value = [_plain(v) for v in value]
        elif key in _SCHEMAS:
            value = _plain(value)
        elif key == "required":
            value = sorted(value)
        plain[key] = value
    return plain
