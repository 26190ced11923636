"""Configuration from the environment (CONTRACT §2)."""

import subprocess
import sys

from domain_events.testing import ROOT

SHOW = "from django.conf import settings; print(settings.DEBUG, settings.DATABASES['default']['ENGINE'])"


def run_settings(**env: str) -> subprocess.CompletedProcess:
    clean = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "config.settings", **env}
    code = f"import django; django.setup(); {SHOW}"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60)


def test_with_no_environment_it_runs_in_debug_on_sqlite():
    result = run_settings()
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "django.db.backends.sqlite3"]


def test_debug_off_requires_a_secret_key():
    refused = run_settings(DEBUG="false")
    assert refused.returncode != 0
    assert "SECRET_KEY" in refused.stderr
    accepted = run_settings(
        DEBUG="false", SECRET_KEY="s" * 50, DATABASE_URL="postgres://postgres@127.0.0.1:5432/shelfwise"
    )
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.split() == ["False", "django.db.backends.postgresql"]
