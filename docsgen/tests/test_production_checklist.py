"""The production checklist (docs/operations.md) against what config/settings.py really reads:
every setting it names is read, the settings start with the checklist's environment and nothing
else, and every setting they refuse to start without in production is in it, marked required."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from django.conf import settings

from docsgen.settings import read_settings

ROOT = Path(settings.BASE_DIR)
OPERATIONS = ROOT / "docs" / "operations.md"
# Values for the checklist's placeholders (`…`): well-formed, as an operator's would be.
STAND_INS = {
    "SECRET_KEY": "checklist-test-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
    "FIELD_ENCRYPTION_KEYS": "checklist-test-field-key-0123456789abcdefghij",
    "DATABASE_URL": "postgres://shelfwise@db.example:5432/shelfwise",
    "DATABASE_REPLICA_URL": "postgres://shelfwise@replica.example:5432/shelfwise",
    "CELERY_BROKER_URL": "redis://redis.example:6379/0",
    "METRICS_TOKEN": "checklist-test-metrics-token-0123456789",
    "EMAIL_URL": "smtp://mail.example:587",
    "DEFAULT_FROM_EMAIL": "shop@example.com",
    "INTEGRATION_BROKER_URL": "amqp://shelfwise:secret@rabbitmq.example:5672//",
}
ASSIGNMENT = re.compile(r"(?:^|\s)([A-Z][A-Z0-9_]*)=(\S*)")

# Imports config/settings.py afresh under each environment given on stdin; prints what each did.
LOAD = """
import importlib, json, os, sys
results = []
for environment in json.load(sys.stdin):
    os.environ.clear()
    os.environ.update(environment)
    sys.modules.pop("config.settings", None)
    try:
        importlib.import_module("config.settings")
        results.append(None)
    except Exception as exc:
        results.append(f"{type(exc).__name__}: {exc}")
print(json.dumps(results))
"""


def checklist() -> dict[str, tuple[str, str]]:
    """Each setting the checklist names: its value and the comment on its line."""
    text = OPERATIONS.read_text()
    section = text[text.index("### Production checklist") :]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    named = {}
    for line in block.splitlines():
        code, _, comment = line.partition(" #")
        for name, value in ASSIGNMENT.findall(code):
            named[name] = (value, comment.strip())
    return named


def environment_of(named: dict[str, tuple[str, str]]) -> dict[str, str]:
    environment = {}
    for name, (value, _) in named.items():
        if "…" in value:
            assert name in STAND_INS, f"give {name} a stand-in value in STAND_INS"
            value = STAND_INS[name]
        environment[name] = value
    return environment


def load(*environments: dict[str, str]) -> list[str | None]:
    """What importing the settings under each environment gives: None, or the error."""
    base = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    completed = subprocess.run(
        [sys.executable, "-c", LOAD],
        input=json.dumps([{**base, **environment} for environment in environments]),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    return json.loads(completed.stdout)


def test_every_setting_the_checklist_names_is_read_by_the_settings():
    named = checklist()
    assert {"DEBUG", "SECRET_KEY", "DATABASE_URL", "FIELD_ENCRYPTION_KEYS"} <= set(named)
    read = {setting.name for setting in read_settings()}
    assert sorted(set(named) - read) == []


def test_the_settings_start_with_the_checklist_alone_and_refuse_without_each_required_one():
    named = checklist()
    assert named["DEBUG"][0] == "false"
    environment = environment_of(named)
    without_each = {name: {k: v for k, v in environment.items() if k != name} for name in named}
    outcomes = load(environment, *without_each.values())

    # Everything the settings refuse to start without in production is in the checklist.
    assert outcomes[0] is None, f"the checklist's environment does not start: {outcomes[0]}"
    required = {name for name, outcome in zip(without_each, outcomes[1:], strict=True) if outcome is not None}
    assert {"SECRET_KEY", "FIELD_ENCRYPTION_KEYS"} <= required
    for name in required:
        assert "required" in named[name][1], f"the checklist should say that {name} is required"
    for name in set(named) - required:
        assert "required" not in named[name][1], f"{name} is not required: the settings start without it"
