"""Fixtures shared by every module's tests: tenants, users, API clients, real services."""

from __future__ import annotations

import asyncio
import contextlib
import email
import fcntl
import os
import tempfile
import uuid
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from aiosmtpd.controller import Controller
from django.conf import settings
from django.test import Client
from kombu import Connection
from kombu.utils.url import parse_url
from rest_framework.test import APIClient

from core.testing import unavailable
from tenants.tests.factories import TenantFactory, UserFactory
from testsupport.processes import free_port

# The machine's RabbitMQ is restarted by a test (`rabbitmqctl`): while it runs, no other test that
# uses RabbitMQ may, in this run's other pytest-xdist workers or in another run on the machine.
RABBITMQ_TURNS = Path(tempfile.gettempdir()) / "shelfwise-tests-rabbitmq.lock"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """A test that uses RabbitMQ holds a shared lock for its set-up, run and tear-down; one that
    restarts it holds the lock alone (docs/testing.md, Parallel workers)."""
    names = getattr(item, "fixturenames", ())
    if "rabbitmq_url" not in names:
        return (yield)
    with RABBITMQ_TURNS.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if "rabbitmqctl" in names else fcntl.LOCK_SH)
        try:
            return (yield)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Each test starts with an empty cache: throttle counts never leak from one test to the next."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def tenant():
    return TenantFactory(slug="tenant-a")


@pytest.fixture
def other_tenant():
    return TenantFactory(slug="tenant-b")


@pytest.fixture
def customer(tenant):
    return UserFactory(tenant=tenant, username="carol")


@pytest.fixture
def staff(tenant):
    return UserFactory(tenant=tenant, username="sam", is_staff=True)


def _client_for(user) -> APIClient:
    from tenants.services import token_issue

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_issue(user=user).key}")
    return client


@pytest.fixture
def customer_api(customer) -> APIClient:
    return _client_for(customer)


@pytest.fixture
def staff_api(staff) -> APIClient:
    return _client_for(staff)


@pytest.fixture
def api_client_for():
    return _client_for


@pytest.fixture
def operator():
    """A superuser with no tenant: an operator who sees every bookstore in the admin."""
    return UserFactory(username="root", tenant=None, is_staff=True, is_superuser=True)


@pytest.fixture
def staff_admin(staff) -> Client:
    """A browser logged in to the admin as the tenant's staff member."""
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def operator_admin(operator) -> Client:
    """A browser logged in to the admin as an operator."""
    client = Client()
    client.force_login(operator)
    return client


@pytest.fixture(scope="session")
def redis_broker() -> redis.Redis:
    """The real Redis broker the tests send Celery messages through; a missing Redis fails the test."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {settings.CELERY_BROKER_URL} is required and unreachable: {exc}")
    return client


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """The real RabbitMQ that integration-broker tests publish to (`TEST_RABBITMQ_URL`).

    Under CI a missing RabbitMQ fails the test (`.ci/run` starts one); elsewhere it is skipped
    with a reason, so `make test` still runs on a machine without it.
    """
    url = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
    try:
        with Connection(url, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:
        message = f"RabbitMQ at {url} is required and unreachable: {exc!r}"
        unavailable(message)
    return url


@pytest.fixture
def broker_proxy(rabbitmq_url):
    """The way to the real RabbitMQ through a proxy that a test cuts and restores (`.url`)."""
    from testsupport.network import TcpProxy

    parts = parse_url(rabbitmq_url)
    proxy = TcpProxy(parts["hostname"] or "127.0.0.1", parts["port"] or 5672)
    vhost = quote(parts["virtual_host"] or "/", safe="")
    proxy.url = f"amqp://{parts['userid']}:{parts['password']}@127.0.0.1:{proxy.port}/{vhost}"
    yield proxy
    proxy.down()


@pytest.fixture
def broker_ledger(rabbitmq_url):
    """A ledger queue of this test's own (INTEGRATION_BROKER_LEDGER), deleted afterwards: other
    runs publishing to the same RabbitMQ at the same time keep to theirs."""
    from integrations.transport import ledger_queue

    name = f"test.ledger.{uuid.uuid4()}"
    yield name
    with Connection(rabbitmq_url, connect_timeout=2) as connection:
        ledger_queue(name)(connection.channel()).delete()


@pytest.fixture
def processes(tmp_path, redis_broker, transactional_db):
    """Start real relays and Celery workers against the test database; all are killed afterwards.

    The broker's test database is emptied first, so no message from an earlier test is delivered.
    """
    from testsupport.processes import ProcessRunner

    redis_broker.flushdb()
    runner = ProcessRunner(tmp_path)
    yield runner
    runner.stop_all()


# --- a real SMTP server on loopback ---------------------------------------------------------


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.refuse = 0  # how many of the next DATA commands to answer with a temporary failure
        self.stall = 0.0  # seconds to wait before answering DATA (a slow server, to kill a sender mid-send)
        self.data_started = 0  # DATA commands received, answered or not
        self.connections = 0  # SMTP sessions greeted (one EHLO or HELO each)
        self.refused_recipients: set[str] = set()  # RCPT TO these is refused for good (550)

    async def handle_EHLO(self, server, session, envelope, hostname, responses) -> list[str]:
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_HELO(self, server, session, envelope, hostname) -> str:
        self.connections += 1
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address in self.refused_recipients:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        self.data_started += 1
        if self.stall:
            await asyncio.sleep(self.stall)
            # The sender may be gone by now: a real server would still have the message. Keep
            # it only if the connection is still up, as a server that answers after the client
            # hung up never got its chance to queue it.
            if session.peer is None or server.transport is None or server.transport.is_closing():
                return "421 4.4.2 connection dropped"
        if self.refuse:
            self.refuse -= 1
            return "451 4.3.0 try again later"
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@contextlib.contextmanager
def _smtp_server_running() -> Iterator[Mailbox]:
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    mailbox.port = port
    try:
        yield mailbox
    finally:
        controller.stop()


def smtp_settings(port: int) -> dict[str, object]:
    """The settings that make Django send through the SMTP server on `port`."""
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": port,
        "EMAIL_USE_TLS": False,
    }


@pytest.fixture
def smtp_server(settings):
    """Django sends through a real SMTP server for the duration of the test."""
    with _smtp_server_running() as mailbox:
        for name, value in smtp_settings(mailbox.port).items():
            setattr(settings, name, value)
        yield mailbox


@pytest.fixture(scope="module")
def smtp_server_for_module():
    """A real SMTP server for a whole test module (`smtp_settings(mailbox.port)` sends through it)."""
    with _smtp_server_running() as mailbox:
        mailbox.settings = smtp_settings(mailbox.port)
        yield mailbox
