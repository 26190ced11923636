"""A test whose service is missing fails under CI and is skipped elsewhere."""

import pytest
from _pytest.outcomes import Failed, Skipped

from core.testing import unavailable


@pytest.mark.parametrize("ci", ["true", "1", "True", "yes", "on"])
def test_under_ci_a_missing_service_fails_the_test(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(Failed, match="no RabbitMQ"):
        unavailable("no RabbitMQ")


@pytest.mark.parametrize("ci", [None, "", "0", "false"])
def test_elsewhere_it_is_skipped_with_its_reason(monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(Skipped, match="no RabbitMQ"):
        unavailable("no RabbitMQ")
