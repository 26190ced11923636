"""Type name → event class, upcasters, and the JSON form of events.

The registry is filled by subclassing `DomainEvent`; upcasters are registered per (type, version)
and form a chain v1 → v2 → … that runs whenever a stored event is read, so handlers only ever see
the current version. Reading never crashes its caller with an obscure error: an unknown type or a
payload that no longer fits raises `EventLoadError` naming the stored event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from domain_events.private import opened

if TYPE_CHECKING:
    from domain_events.events import DomainEvent

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]


class EventLoadError(Exception):
    """A stored event cannot be turned into its current class."""

    def __init__(self, ref: str, reason: str) -> None:
        super().__init__(f"stored event {ref}: {reason}")
        self.ref = ref
        self.reason = reason


class UnknownEventType(EventLoadError):
    pass


class EventSchemaError(EventLoadError):
    pass


class EventRegistry:
    def __init__(self) -> None:
        self._classes: dict[str, type[DomainEvent]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, cls: type[DomainEvent]) -> None:
        existing = self._classes.get(cls.type)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"event type {cls.type!r} is already taken by {existing.__qualname__}")
        self._classes[cls.type] = cls

    def upcaster(self, type_name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register `fn(payload_vN) -> payload_vN+1` for one step of a type's chain."""

        def decorate(fn: Upcaster) -> Upcaster:
            key = (type_name, from_version)
            if key in self._upcasters:
                raise ValueError(f"an upcaster for {type_name} v{from_version} is already registered")
            self._upcasters[key] = fn
            return fn

        return decorate

    def upcaster_for(self, type_name: str, from_version: int) -> Upcaster | None:
        """The step from `from_version` to the next, if one is registered."""
        return self._upcasters.get((type_name, from_version))

    def get(self, type_name: str) -> type[DomainEvent]:
        try:
            return self._classes[type_name]
        except KeyError:
            raise UnknownEventType(type_name, f"unknown event type {type_name!r}") from None

    def types(self) -> Mapping[str, type[DomainEvent]]:
        return dict(self._classes)

    # --- JSON form ------------------------------------------------------------------------

    def dump(self, event: DomainEvent) -> Payload:
        """All fields of `event` as JSON-ready values (UUID, Decimal → str; datetimes ISO 8601)."""
        return _adapter(type(event)).dump_python(event, mode="json")

    def dump_json(self, event: DomainEvent, *, exclude: frozenset[str] = frozenset()) -> str:
        """`dump` straight to JSON text, leaving out the `exclude`d fields."""
        return _adapter(type(event)).dump_json(event, exclude=set(exclude) or None).decode()

    def load(
        self,
        type_name: str,
        version: int,
        payload: Payload,
        *,
        envelope: Mapping[str, Any] | None = None,
        ref: str | None = None,
    ) -> DomainEvent:
        """Build the current version of an event from a stored (possibly older) payload.

        `payload` holds the event's own fields as stored at `version`; `envelope` the fields kept
        beside it (event id, tenant, times, correlation). `ref` names the stored event in errors.
        """
        ref = ref or f"{type_name} v{version}"
        try:
            cls = self._classes[type_name]
        except KeyError:
            raise UnknownEventType(ref, f"unknown event type {type_name!r}") from None
        if not isinstance(payload, dict):
            raise EventSchemaError(ref, f"payload is {type(payload).__name__}, not an object")
        if version > cls.version:
            raise EventSchemaError(ref, f"version {version} is newer than this code knows (v{cls.version})")
        # Private fields are stored encrypted: opened before anything reads them.
        data = opened(cls.private_fields, payload)
        for step in range(version, cls.version):
            upcast = self._upcasters.get((type_name, step))
            if upcast is None:
                raise EventSchemaError(ref, f"no upcaster from v{step} to v{step + 1}")
            try:
                data = upcast(data)
            except (KeyError, TypeError, ValueError) as exc:
                raise EventSchemaError(ref, f"upcasting v{step} failed: {exc!r}") from exc
        if envelope:
            data.update(envelope)
        try:
            return _adapter(cls).validate_python(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(payload)'}: {err['msg']}" for err in exc.errors()
            )
            raise EventSchemaError(ref, f"payload does not fit {cls.__name__} v{cls.version}: {problems}") from exc


@cache
def _adapter(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)


registry = EventRegistry()
