import uuid

from django.core.management.base import BaseCommand, CommandError

from domain_events.deadletters import redrive
from domain_events.models import Delivery


class Command(BaseCommand):
    help = "Re-queue dead-lettered handler deliveries (all, or one handler's, or one event's)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--handler", help="Only deliveries to this handler name.")
        parser.add_argument("--event-id", help="Only deliveries of this event (UUID).")

    def handle(self, *args, handler: str | None, event_id: str | None, **options) -> None:
        qs = Delivery.objects.filter(status=Delivery.Status.DEAD)
        if handler:
            qs = qs.filter(handler=handler)
        if event_id:
            try:
                qs = qs.filter(stored_event__event_id=uuid.UUID(event_id))
            except ValueError:
                raise CommandError(f"--event-id: {event_id!r} is not a UUID") from None
        count = redrive(qs)
        self.stdout.write(f"Re-queued {count} dead deliver{'y' if count == 1 else 'ies'}.")
