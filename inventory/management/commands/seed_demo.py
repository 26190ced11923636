from django.core.management.base import BaseCommand
from django.db import transaction

from tenants.models import Tenant, User
from tenants.services import tenant_create, user_create, user_token


class Command(BaseCommand):
    help = "Load the demo bookstore `demo` with its staff and customer (idempotent)."

    def handle(self, *args, **options) -> None:
        with transaction.atomic():
            tenant = Tenant.objects.filter(slug="demo").first() or tenant_create(slug="demo", name="Demo Books")
            tokens = {}
            for username, is_staff in (("staff", True), ("alice", False)):
                user = User.objects.filter(username=username).first()
                if user is None:
                    user, _ = user_create(tenant=tenant, username=username, password=username, is_staff=is_staff)
                tokens[username] = user_token(user=user).key
        self.stdout.write(self.style.SUCCESS("Demo data ready."))
        self.stdout.write(f"  staff token: {tokens['staff']}")
        self.stdout.write(f"  alice token: {tokens['alice']}")
