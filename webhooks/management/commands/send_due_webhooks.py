"""`manage.py send_due_webhooks [--once]`: the webhooks sweep."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection

from core.commands import say
from webhooks.services import deliveries_enqueue_due

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Hands to the Celery workers the webhook deliveries that are due and have no message: retries "
        "too far off for a countdown, and messages lost with a worker or the broker. Long-running unless --once."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="One pass, then exit.")

    def handle(self, *args, once: bool = False, **options) -> None:
        if options["verbosity"] >= 1:
            say(self, logger, "webhooks sweep running" + (" once" if once else ""))
        while True:
            try:
                handed = deliveries_enqueue_due()
            except Exception:
                if once:
                    raise
                # A database restart or a broker outage: the sweep stays up and tries again next
                # pass, as the relays do (under `make run` one process that exits stops them all).
                logger.exception("webhooks sweep pass failed; retrying")
                connection.close()
                handed = 0
            if handed and options["verbosity"] >= 2:
                say(self, logger, f"handed {handed} webhook deliveries to the workers")
            if once:
                return
            time.sleep(settings.WEBHOOK_SWEEP_INTERVAL)
