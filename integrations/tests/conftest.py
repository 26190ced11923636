import pytest

from domain_events import tracking
from domain_events.subscriptions import subscriptions
from integrations import transport
from integrations.apps import BROKER_READER, track_events_for_broker


@pytest.fixture
def broker_reader(settings, broker_proxy, broker_ledger, transactional_db):
    """The integration relay's position reader, subscribed in this process and publishing through
    `broker_proxy`; publishers only record (no handler runs), and its checkpoint starts at the head."""
    settings.DOMAIN_EVENTS = {**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}
    settings.INTEGRATION_BROKER_URL = broker_proxy.url
    settings.INTEGRATION_BROKER_LEDGER = broker_ledger
    settings.INTEGRATION_BROKER_BATCH_SIZE = 100
    settings.INTEGRATION_BROKER_RETRY_SCHEDULE = [1]
    track_events_for_broker()
    tracking.catch_up(BROKER_READER)
    yield BROKER_READER
    subscriptions.remove_tracker(BROKER_READER)
    transport.disconnect()
