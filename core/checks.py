"""`manage.py check --deploy`: the public development `SECRET_KEY` is never a production key."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, register

# The key `make run` uses (with `DEBUG` on). It is in the repository, so anyone can sign sessions,
# password-reset links and messages with it: the settings refuse it with `DEBUG` off.
DEVELOPMENT_SECRET_KEY = "dev-only-insecure-key-change-me-0123456789abcdefghijklmnopqrstuvwxyz"  # noqa: S105


@register(Tags.security, deploy=True)
def development_secret_key(app_configs=None, **kwargs) -> list[Error]:
    if getattr(settings, "SECRET_KEY", None) != DEVELOPMENT_SECRET_KEY:
        return []
    return [
        Error(
            "SECRET_KEY is the public development key.",
            hint="Set SECRET_KEY to a long random value of your own (and keep DEBUG off in production).",
            id="core.E001",
        )
    ]
