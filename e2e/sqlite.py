"""The zero-setup default of `make run` for the end-to-end tests: SQLite and the filesystem Celery
transport in a test's own folder, and `manage.py` run there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from testsupport.processes import ROOT


@pytest.fixture
def sqlite_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CELERY_BROKER_URL"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="true",  # as `make run` sets it
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        CELERY_FILESYSTEM_BROKER_DIR=str(tmp_path / "broker"),
        PYTHONUNBUFFERED="1",
        WEBHOOK_ALLOW_PRIVATE_NETWORKS="true",
    )
    return env


def manage(env: dict[str, str], *args: str, expect: int = 0) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == expect, (result.stdout + result.stderr)[-3000:]
    return result.stdout
