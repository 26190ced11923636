import logging

from django.core.management.base import BaseCommand

from core.commands import say
from domain_events.executor import Report
from domain_events.relay import Relay

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Dispatch stored events not yet handed on (crash recovery, broker outages, scheduled retries). "
        "Runs until stopped unless --once; several relays may run at once."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="Hand on what is due now, then exit.")
        parser.add_argument("--batch-size", type=int, default=None, help="Deliveries claimed per batch.")
        parser.add_argument("--poll-interval", type=float, default=None, help="Seconds between polls.")

    def handle(self, *args, once: bool, batch_size: int | None, poll_interval: float | None, **options) -> None:
        verbosity = options["verbosity"]

        def show(report: Report) -> None:
            if verbosity >= 2:
                say(self, logger, _describe(report))

        relay = Relay(batch_size=batch_size, poll_interval=poll_interval, on_report=show)
        if once:
            report = relay.drain()
            self.stdout.write(_describe(report))
            return
        say(self, logger, f"Outbox relay {relay.name} running (Ctrl-C to stop).")
        relay.run()


def _describe(report: Report) -> str:
    return (
        f"handed on {report.handled}: {report.succeeded} succeeded, {report.sent} sent to workers, "
        f"{report.failed} failed (retry scheduled), {report.dead} dead, {report.waiting} waiting for earlier events"
    )
