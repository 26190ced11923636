"""A test whose service is missing fails, under CI or not: no test can skip."""

import pytest
from _pytest.outcomes import Failed

from core.testing import unavailable


@pytest.mark.parametrize("ci", [None, "", "0", "false", "no", "true", "1", "True", "yes", "on"])
def test_a_missing_service_fails_the_test_whatever_ci_says(monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(Failed, match="no RabbitMQ"):
        unavailable("no RabbitMQ")
