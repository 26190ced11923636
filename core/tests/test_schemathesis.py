"""The whole API against its own OpenAPI document, with schemathesis and every check it has.

Each operation of `/api/v1/schema/` gets generated requests, valid and invalid, sent in-process to
the Django WSGI application on the test database (real PostgreSQL), once with a customer's token
and once with a staff token; then stateful runs follow the document's links (a product created,
ordered, read, restocked; an order read, cancelled, fulfilled; a webhook endpoint read, changed,
deleted). Any 5xx, undocumented status, response off its schema, invalid input accepted or valid
input refused fails the test.

`SCHEMATHESIS_MAX_EXAMPLES` (default 5) sets the examples per operation (schemathesis adds its
coverage cases, the boundaries of every constraint) and twice as many stateful scenarios per
role; `make fuzz` runs many more (see docs/testing.md). The number of requests each run sent is
printed at the end of the session.
"""

from __future__ import annotations

import os
from collections import Counter
from contextlib import contextmanager

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, settings

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "5"))
ROLES = ("customer", "staff")
pytestmark = pytest.mark.django_db

# What schemathesis is told beyond the document: what no OpenAPI document can describe.
CONFIG = schemathesis.Config.from_dict(
    {
        # The server refuses NUL characters anywhere (PostgreSQL text cannot hold them): a 400.
        "generation": {"allow-x00": False},
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
            }
        },
        "operations": [
            {
                # A well-formed login with credentials that do not exist is refused with a 400.
                "include-operation-id": "auth_token_create",
                "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "429"]}},
            },
            {
                # A well-formed order or restock that the state refuses (a sku not in the catalog, a
                # sku twice, a total too large, stock past its maximum) is a 400 with field messages:
                # the document describes the form, not the catalog.
                "include-operation-id": ["orders_place", "products_restock"],
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "400", "401", "403", "404", "409", "422", "429", "5xx"]
                    }
                },
            },
        ],
    }
)
schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", WSGIHandler(), config=CONFIG)

SETTINGS = settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))

sent: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_requests_sent(request):
    """Print how many requests the run sent, beside pytest's own output."""
    yield
    summary = ", ".join(f"{count} {kind}" for kind, count in sorted(sent.items()))
    plugins = request.config.pluginmanager
    with plugins.get_plugin("capturemanager").global_and_fixture_disabled():
        plugins.get_plugin("terminalreporter").write_line(
            f"\nschemathesis: {sum(sent.values())} requests ({summary}); {MAX_EXAMPLES} examples per operation"
        )


@pytest.fixture(autouse=True)
def _private_networks_allowed(settings):
    """Where a webhook URL may lead is the deployment's policy, not the document's: allowed here."""
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True


@pytest.fixture
def tokens(client, customer, staff) -> dict[str, str]:
    """An API token per role, obtained as a client does. The WSGI application then runs in the
    test's transaction: like Django's test client, it must not close the connection after a request."""
    tokens = {
        role: client.post(
            "/api/v1/auth/token", {"username": user.username, "password": "secret"}, content_type="application/json"
        ).json()["token"]
        for role, user in (("customer", customer), ("staff", staff))
    }
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield tokens
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@contextmanager
def fresh_database():
    """Each example starts from the same database, so that Hypothesis can replay and shrink it."""
    savepoint = transaction.savepoint()
    try:
        yield
    finally:
        transaction.savepoint_rollback(savepoint)


@pytest.mark.schemathesis
@schema.parametrize()
@SETTINGS
def test_every_operation_answers_as_documented(case, tokens):
    # The token is the credential; a generated session cookie would only stand beside it.
    (case.cookies or {}).pop("sessionid", None)
    # The coverage phase's many boundary cases go in as staff, who pass every permission and reach
    # every validation; the fuzzed examples go in as both.
    coverage = case.meta is not None and case.meta.phase.name == "coverage"
    with fresh_database():
        for role in ("staff",) if coverage else ROLES:
            case.call_and_validate(headers={"Authorization": f"Token {tokens[role]}"})
            sent["stateless"] += 1


@pytest.mark.schemathesis
@pytest.mark.parametrize("role", ROLES)
def test_following_the_links_answers_as_documented(role, tokens):
    class Machine(schema.as_state_machine()):
        def setup(self):
            self.savepoint = transaction.savepoint()

        def teardown(self):
            transaction.savepoint_rollback(self.savepoint)

        def before_call(self, case):
            (case.cookies or {}).pop("sessionid", None)

        def get_call_kwargs(self, case):
            return {"headers": {"Authorization": f"Token {tokens[role]}"}}

        def after_call(self, response, case):
            super().after_call(response, case)
            sent["stateful"] += 1

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            # The token is given, not generated: the checks probe without it and with a bad one.
            case.validate_response(
                response,
                additional_checks=additional_checks,
                headers=kwargs.get("headers"),
                transport_kwargs=kwargs or None,
                recorder=self.recorder,
            )

    Machine.run(
        settings=settings(SETTINGS, max_examples=MAX_EXAMPLES * 2, stateful_step_count=10),
    )
