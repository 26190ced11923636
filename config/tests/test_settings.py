"""Configuration from the environment (docs/settings.md)."""

import os
import subprocess
import sys

from testsupport.processes import ROOT

SHOW = "from django.conf import settings; print(settings.DEBUG, settings.DATABASES['default']['ENGINE'])"


def run_settings(**env: str) -> subprocess.CompletedProcess:
    clean = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "config.settings", **env}
    code = f"import django; django.setup(); {SHOW}"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60)


def test_with_no_environment_it_refuses_to_start_and_debug_on_runs_on_sqlite_with_the_development_key():
    refused = run_settings()
    assert refused.returncode != 0
    assert "SECRET_KEY" in refused.stderr
    result = run_settings(DEBUG="true")  # what `make run` sets
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "django.db.backends.sqlite3"]


def test_debug_off_refuses_the_development_secret_key():
    from core.checks import DEVELOPMENT_SECRET_KEY

    refused = run_settings(DEBUG="false", SECRET_KEY=DEVELOPMENT_SECRET_KEY, FIELD_ENCRYPTION_KEYS="k" * 32)
    assert refused.returncode != 0
    assert "development SECRET_KEY" in refused.stderr


def test_check_deploy_flags_the_development_secret_key():
    result = check_deploy(DEBUG="true")
    assert result.returncode != 0
    assert "core.E001" in result.stderr + result.stdout


def test_debug_off_requires_a_secret_key():
    refused = run_settings(DEBUG="false")
    assert refused.returncode != 0
    assert "SECRET_KEY" in refused.stderr
    accepted = run_settings(
        DEBUG="false",
        SECRET_KEY="s" * 50,
        FIELD_ENCRYPTION_KEYS="k" * 32,
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/shelfwise",
    )
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.split() == ["False", "django.db.backends.postgresql"]


# The production checklist of docs/operations.md: with these, `manage.py check --deploy` is clean.
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "x7Hq2-not-a-real-key-but-long-and-random-enough-Zp9LmW4vRt8sKe3NbYc6",
    "FIELD_ENCRYPTION_KEYS": "Rk3-not-a-real-field-key-but-long-enough-7Vq2Lx9",
    "ALLOWED_HOSTS": "shop.example.com",
    "SECURE_SSL_REDIRECT": "true",
    "SESSION_COOKIE_SECURE": "true",
    "CSRF_COOKIE_SECURE": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
}


def check_deploy(**env: str) -> subprocess.CompletedProcess:
    clean = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/shelfwise"),
        **env,
    }
    argv = [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"]
    return subprocess.run(argv, cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120)


def test_check_deploy_is_clean_with_the_production_settings():
    result = check_deploy(**PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_names_what_a_production_setting_left_out_would_cost():
    result = check_deploy(**{k: v for k, v in PRODUCTION.items() if not k.startswith(("SECURE_", "SESSION_", "CSRF_"))})
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr + result.stdout


def test_debug_off_requires_field_encryption_keys_of_32_characters_or_more():
    base = {"DEBUG": "false", "SECRET_KEY": "s" * 50, "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/shelfwise"}
    refused = run_settings(**base)
    assert refused.returncode != 0
    assert "FIELD_ENCRYPTION_KEYS" in refused.stderr
    too_short = run_settings(**base, FIELD_ENCRYPTION_KEYS=f"{'a' * 40},short")
    assert too_short.returncode != 0
    assert "at least 32 characters" in too_short.stderr


def test_field_encryption_keys_are_read_from_the_environment_as_a_list():
    code = "import django; django.setup(); from django.conf import settings; print(settings.FIELD_ENCRYPTION_KEYS)"
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "false",
        "SECRET_KEY": "s" * 50,
        "FIELD_ENCRYPTION_KEYS": f"{'n' * 32},{'o' * 32}",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/shelfwise",
    }
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(["n" * 32, "o" * 32])
