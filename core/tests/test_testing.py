"""A test whose service is missing fails under CI and is skipped elsewhere."""

import pytest
from _pytest.outcomes import Failed, Skipped

from core.testing import unavailable


def test_under_ci_a_missing_service_fails_the_test(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(Failed, match="no RabbitMQ"):
        unavailable("no RabbitMQ")


def test_elsewhere_it_is_skipped_with_its_reason(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(Skipped, match="no RabbitMQ"):
        unavailable("no RabbitMQ")
