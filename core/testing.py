"""Test support shared by every module's tests."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(message: str) -> NoReturn:
    """A service or binary a test needs is missing: under CI the test fails, elsewhere it is
    skipped with `message`, so `make test` still runs on a machine without it. CI is any value of
    `CI` but empty, `0`, `false` or `no`: a CI that spells it `1`, `True` or `on` never skips."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(message)
    pytest.skip(message)
