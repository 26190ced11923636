"""The private-network guard sees through IPv6 addresses that carry an IPv4 one."""

import pytest

from webhooks.transport import address_refusal


@pytest.fixture(autouse=True)
def _guard_on(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False


@pytest.mark.parametrize(
    ("address", "carried"),
    [
        ("64:ff9b::7f00:1", "127.0.0.1"),  # NAT64, well-known prefix
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),  # the cloud metadata address through NAT64
        ("64:ff9b::c0a8:101", "192.168.1.1"),
        ("64:ff9b:1::a00:1", "10.0.0.1"),  # NAT64, local-use prefix, /96 embedding
        ("64:ff9b:1:a00:1::", "10.0.0.1"),  # NAT64, local-use prefix, /48 embedding
        ("2002:7f00:1::", "127.0.0.1"),  # 6to4
        ("2002:a9fe:a9fe::1", "169.254.169.254"),
        ("::7f00:1", "127.0.0.1"),  # IPv4-compatible
        ("::a00:1", "10.0.0.1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),  # IPv4-mapped
    ],
)
def test_an_ipv6_address_carrying_a_private_ipv4_one_is_refused(address, carried):
    refusal = address_refusal(address)
    assert refusal is not None, address
    assert carried in refusal or "ffff" in address or address.startswith("64:ff9b:1:")


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "2002:5db8:d822::1"])
def test_public_addresses_and_6to4_of_a_public_one_pass(address):
    assert address_refusal(address) is None
