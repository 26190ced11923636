"""`manage.py consume_inbound`: consume the distributor's shipment notices from RabbitMQ until stopped."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from inbound.consumer import InboundConsumer


class Command(BaseCommand):
    help = "Consume the distributor's shipment notices from INBOUND_BROKER_QUEUE; SIGTERM or SIGINT stops it."

    def handle(self, *args, **options) -> None:
        if not settings.INTEGRATION_BROKER_URL:
            raise CommandError("INTEGRATION_BROKER_URL is not set: there is no broker to consume from.")
        InboundConsumer(
            url=settings.INTEGRATION_BROKER_URL,
            queue=settings.INBOUND_BROKER_QUEUE,
            prefetch=settings.INBOUND_BROKER_PREFETCH,
            max_failures=settings.INBOUND_BROKER_MAX_FAILURES,
        ).run()
        self.stdout.write("stopped")
