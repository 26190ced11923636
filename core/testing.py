"""Test support shared by every module's tests."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(message: str) -> NoReturn:
    """A service or binary a test needs is missing: under CI (`CI=true`) the test fails, elsewhere
    it is skipped with `message`, so `make test` still runs on a machine without it."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)
