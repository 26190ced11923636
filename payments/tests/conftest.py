"""Fixtures for the payments tests."""

from __future__ import annotations

import pytest

from payments.gateways import SimulatedGateway


@pytest.fixture
def gateway() -> SimulatedGateway:
    """The simulated provider with no latency and no lost answers."""
    return SimulatedGateway(delay=0, lost_responses=0)


@pytest.fixture
def no_fast_path(settings) -> None:
    """Nothing is dispatched on commit: deliveries wait until a test runs them with `run_deliveries`."""
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
