"""`make chaos` in small, inside `make test`: the whole platform (gunicorn, two Celery workers, two
relays, the webhook sweep, the inbound consumer, a private PostgreSQL and Redis, a queue of its own
on the machine's RabbitMQ) places orders and takes the distributor's shipment notices while
processes are SIGKILLed, Redis is stopped and PostgreSQL restarted; then every guarantee is one
assertion.

The run is the real `python -m chaos`, in a subprocess of its own; each test below reads one line
of its results. Without PostgreSQL's or Redis' binaries, or RabbitMQ, the run is skipped, except
under CI (`CI=true`), where it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from chaos.services import ROOT, missing_binaries
from core.testing import unavailable

pytestmark = [pytest.mark.e2e]

ORDERS = 100
CHECKS = [
    "faults injected as planned",
    "drained",
    "every order settled within 60 s of the last fault",
    "every order placed over HTTP",
    "every order in a final state",
    "every order ended as its client meant",
    "no delivery left pending or dead",
    "no event lost",
    "one delivery record per event and handler",
    "one stock movement per reservation",
    "one capture per order",
    "one e-mail per event and template",
    "one webhook per event and endpoint",
    "one audit entry per event",
    "stock conserved",
    "every distributor notice applied once",
    "check_projections exits 0",
    "verify_audit_log exits 0",
    "dashboard equals SQL over the orders",
]
# The run's own services: nothing of the test run's environment may point it elsewhere.
NOT_INHERITED = ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL", "EMAIL_URL")


@pytest.fixture(scope="module")
def chaos_run(tmp_path_factory, rabbitmq_url) -> dict:
    missing = missing_binaries()
    if missing:
        message = f"the chaos run needs {', '.join(missing)}"
        unavailable(message)
    folder = tmp_path_factory.mktemp("chaos")
    results = folder / "results.json"
    argv = [
        sys.executable, "-m", "chaos", "--orders", str(ORDERS), "--clients", "6", "--web-workers", "2",
        "--kill-every", "2", "--redis-outage", "3", "--min-kills", "2", "--drain-timeout", "120",
        "--results", str(results), "--logs", str(folder / "logs"), "--rabbitmq", rabbitmq_url,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    run = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if not results.exists():
        pytest.fail(f"the chaos run ended with {run.returncode} and no results:\n{(run.stdout + run.stderr)[-4000:]}")
    outcome = json.loads(results.read_text())
    outcome["returncode"] = run.returncode
    return outcome


def test_the_run_placed_every_order_under_every_kind_of_fault(chaos_run):
    assert chaos_run["figures"]["orders"] == ORDERS
    faults = chaos_run["figures"]["faults"]
    kills = [faults[f"kill_{kind}"] for kind in ("web", "worker", "relay", "sweep", "consumer")]
    assert min(kills) >= 2, faults
    assert faults["redis_outage"] == 1, faults
    assert faults["postgres_restart"] == 1, faults


def test_the_run_reports_the_settle_time_of_each_kind_of_fault(chaos_run):
    table = {row["kind"]: row for row in chaos_run["figures"]["settle_by_fault_kind"]}
    assert list(table) == [
        "web SIGKILL",
        "worker SIGKILL",
        "pool process SIGKILL",
        "relay SIGKILL",
        "sweep SIGKILL",
        "consumer SIGKILL",
        "Redis down",
        "PostgreSQL restart",
    ]
    for kind in ("web SIGKILL", "relay SIGKILL", "sweep SIGKILL", "Redis down", "PostgreSQL restart"):
        assert table[kind]["faults"] >= 1, table[kind]
        assert table[kind]["orders_touched"] >= 1, table[kind]
        assert 0 <= table[kind]["p50"] <= table[kind]["p99"] <= table[kind]["max"], table[kind]
    assert table["worker SIGKILL"]["faults"] + table["pool process SIGKILL"]["faults"] >= 2
    assert "seconds" in chaos_run["figures"]["position_readers"]["slowest"]


def test_the_distributor_sent_notices_both_ways_and_some_twice(chaos_run):
    notices = chaos_run["figures"]["shipment_notices"]
    assert notices["by_way"].get("webhook", 0) >= 1, notices
    assert notices["by_way"].get("broker", 0) >= 1, notices
    assert notices["sent_twice_on_purpose"] >= 1, notices
    assert notices["applied"] + notices["nothing_to_do"] == notices["sent"], notices


@pytest.mark.parametrize("name", CHECKS)
def test_guarantee_holds_after_the_faults(chaos_run, name):
    checks = {check["name"]: check for check in chaos_run["checks"]}
    assert name in checks, f"the run did not check {name!r}"
    assert checks[name]["ok"], checks[name]["detail"]


def test_the_run_exits_non_zero_exactly_when_a_check_failed(chaos_run):
    assert (chaos_run["returncode"] == 0) == all(check["ok"] for check in chaos_run["checks"])
