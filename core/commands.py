"""What long-running management commands (relays, sweeps) say about themselves."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.management.base import BaseCommand


def say(command: BaseCommand, logger: logging.Logger, message: str) -> None:
    """The command's own line: its plain output by default; with `LOG_FORMAT=json` an info log line
    (with `LOG_LEVEL` above info, none), so that every line of the process is one JSON object."""
    if getattr(settings, "LOG_FORMAT", "console") == "json":
        logger.info("%s", message)
    else:
        command.stdout.write(message)
