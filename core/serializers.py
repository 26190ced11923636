"""Serializer helpers every API module shares.

An input serializer of the API accepts exactly what its OpenAPI schema describes (`core.schema`
documents the same rules): no field it does not know, each value of its JSON type (DRF would
turn `"3"`, `3.0` and `true` into the integer 3 and `1` into the string "1"), money as a decimal
string of the documented form (or a JSON integer, never a float), and strings measured as sent,
before DRF trims their whitespace.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rest_framework import serializers
from rest_framework.settings import api_settings

BLANK_MESSAGE = "This field may not be blank."
# A character that `str.strip()` keeps, as a regular expression that JSON Schema validators read
# alike (their `\S` differs from Python's on a few characters): a string is not blank if it has one.
VISIBLE_CHARACTER = r"[^\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


def decimal_pattern(field: serializers.DecimalField) -> str:
    """The form of a decimal string `field` takes: digits, an optional point and at most
    `decimal_places` decimals, a sign only if negative values are allowed; no exponent, no spaces."""
    whole = (field.max_digits - field.decimal_places) if field.max_digits is not None else None
    digits = rf"\d{{1,{whole}}}" if whole else r"\d+"
    decimals = rf"(\.\d{{1,{field.decimal_places}}})?" if field.decimal_places else ""
    sign = "" if field.min_value is not None and field.min_value >= 0 else "-?"
    return rf"^{sign}{digits}{decimals}$"


def json_type_error(field: serializers.Field, value: Any) -> Any:
    """The error of `value` for `field` if it is not of the field's JSON type, else None.

    A `null` is left to the field (it knows whether it allows it); a list field's items are
    checked against its child, and their errors keyed by index as DRF reports them.
    """
    if value is None:
        return None
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else ["Must be true or false."]
    if isinstance(field, serializers.IntegerField):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else [field.error_messages["invalid"]]
    if isinstance(field, serializers.DecimalField):
        # A JSON integer is exact; a JSON fraction is a float, which money never is.
        whole = isinstance(value, int) and not isinstance(value, bool)
        if not whole and not (isinstance(value, str) and re.fullmatch(decimal_pattern(field), value)):
            places = field.decimal_places or 0
            return [f'A decimal string is required, such as "12.{"5" * places}" (at most {places} decimals).']
        return None
    if isinstance(field, serializers.CharField | serializers.DateTimeField | serializers.DateField):
        if not isinstance(value, str):
            return [field.error_messages.get("invalid", "Not a valid string.")]
        return _string_error(field, value)
    if isinstance(field, serializers.ChoiceField):
        strings = all(isinstance(choice, str) for choice in field.choices)
        return None if not strings or isinstance(value, str) else [f'"{value}" is not a valid choice.']
    if isinstance(field, serializers.ListField) and isinstance(value, list):
        # DRF refuses what is not a list; its items are checked here.
        errors = {i: e for i, item in enumerate(value) if (e := json_type_error(field.child, item))}
        return errors or None
    if isinstance(field, serializers.Serializer):
        return None if isinstance(value, Mapping) else ["Expected an object."]
    return None


def is_blank(field: serializers.CharField, value: str) -> bool:
    """Blank as DRF sees it: empty, or only whitespace if the field trims it."""
    return not (value.strip() if field.trim_whitespace else value)


def _string_error(field: serializers.Field, value: str) -> list[str] | None:
    """A string as sent: its length before trimming, and not blank unless the field allows it."""
    max_length = getattr(field, "max_length", None)
    if max_length is not None and len(value) > max_length:
        return [f"Ensure this field has no more than {max_length} characters."]
    if isinstance(field, serializers.CharField) and not field.allow_blank and is_blank(field, value):
        return [BLANK_MESSAGE]
    return None


class StrictInputSerializer(serializers.Serializer):
    """Refuses fields it does not know, so a misspelt or read-only field is an error, not a no-op,
    and values that are not of their field's JSON type. `at_least_one_field`: an empty object is
    refused too (a PATCH that would change nothing)."""

    at_least_one_field = False

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            if self.at_least_one_field and not data:
                names = sorted(self.fields)
                message = f"Give at least one of: {', '.join(names)}."
                raise serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: [message]})
            writable = {name for name, field in self.fields.items() if not field.read_only}
            errors: dict[str, Any] = {name: ["Unknown field."] for name in sorted(set(data) - writable)}
            for name, value in data.items():
                field = self.fields.get(name)
                if field is not None and not field.read_only and (error := self.value_error(field, value)):
                    errors[name] = error
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)

    def value_error(self, field: serializers.Field, value: Any) -> Any:
        return json_type_error(field, value)


class StrictQuerySerializer(StrictInputSerializer):
    """Query parameters, as strictly as a body: no parameter it does not know, each at most once,
    an integer written as one (`-?[0-9]+`), and an empty value a value (DRF would take `?status=`
    for no filter at all)."""

    def to_internal_value(self, data: Any) -> Any:
        if hasattr(data, "getlist"):
            repeated = sorted(name for name in data if len(data.getlist(name)) > 1)
            if repeated:
                raise serializers.ValidationError({name: ["Give this parameter once."] for name in repeated})
            data = {name: data[name] for name in data}
        return super().to_internal_value(data)

    def value_error(self, field: serializers.Field, value: Any) -> Any:
        if isinstance(field, serializers.IntegerField) and not re.fullmatch(r"-?[0-9]+", value):
            return [field.error_messages["invalid"]]
        return None


class NoInputSerializer(StrictInputSerializer):
    """The body of an operation that takes none (`POST orders/{id}/cancel`): absent, empty or `{}`;
    any field in it is unknown, and refused as such rather than ignored."""


def refuse_any_input(data: Any) -> None:
    """Raise DRF's `ValidationError` (400) if `data`, the body of an operation that takes none, has anything in it."""
    NoInputSerializer(data=data).is_valid(raise_exception=True)
