from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError
from tenants.services import tenant_create


class Command(BaseCommand):
    help = "Create a tenant (bookstore) and print its id."

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", default=None)
        parser.add_argument("--currency", default="USD")
        parser.add_argument("--timezone", default="UTC")

    def handle(self, *args, slug: str, name: str | None, currency: str, timezone: str, **options) -> None:
        try:
            tenant = tenant_create(slug=slug, name=name, currency=currency, timezone=timezone)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
        self.stdout.write(str(tenant.id))
