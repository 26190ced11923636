from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError
from tenants.selectors import tenant_get_by_slug
from tenants.services import user_create


class Command(BaseCommand):
    help = "Create a user of a tenant and print the user's API token."

    def add_arguments(self, parser) -> None:
        parser.add_argument("tenant_slug")
        parser.add_argument("username")
        parser.add_argument("--staff", action="store_true", help="Bookstore staff (admin and staff API).")
        parser.add_argument("--password", default=None, help="Without it the user can only use the token.")
        parser.add_argument("--email", default="")

    def handle(self, *args, tenant_slug: str, username: str, staff: bool, password: str | None, email: str, **options):
        tenant = tenant_get_by_slug(slug=tenant_slug)
        if tenant is None:
            raise CommandError(f"No tenant with slug {tenant_slug!r}.")
        try:
            _, issued = user_create(tenant=tenant, username=username, password=password, is_staff=staff, email=email)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(issued.key)  # shown this once: only its hash is stored
