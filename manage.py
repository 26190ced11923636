#!/usr/bin/env python
"""Django's command-line entry point for ShelfWise."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    from core import tracing

    # Off unless an OTLP endpoint is configured; the command's name names the process in its traces.
    tracing.setup(sys.argv[1] if len(sys.argv) > 1 else "manage")

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
