"""`seed_demo`: the demo bookstore, its users and its catalog (docs/operations.md, Commands). Safe to run
again: it adds only what is missing, and issues the demo users new API tokens (the earlier ones are revoked)."""

from __future__ import annotations

import json
from decimal import Decimal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from domain_events.actors import add_by_argument, command_actor
from domain_events.context import acting_as
from inventory.models import Product
from inventory.services import product_create
from tenants.models import Tenant, User
from tenants.services import tenant_create, token_issue, user_create, user_tokens_revoke

BASE_URL = "http://127.0.0.1:8000"

# sku, title, price, initial stock
DEMO_CATALOG: tuple[tuple[str, str, Decimal, int], ...] = (
    ("BOOK-DUNE", "Dune", Decimal("19.99"), 25),
    ("BOOK-NEUROMANCER", "Neuromancer", Decimal("14.50"), 12),
    ("BOOK-EARTHSEA", "A Wizard of Earthsea", Decimal("12.00"), 8),
    ("BOOK-SICP", "Structure and Interpretation of Computer Programs", Decimal("59.97"), 5),
    ("BOOK-DDD", "Domain-Driven Design", Decimal("54.99"), 3),
    ("BOOK-HOBBIT", "The Hobbit", Decimal("9.99"), 40),
)


class Command(BaseCommand):
    help = "Load the demo bookstore `demo` with its staff, its customer and a catalog with stock (idempotent)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--allow-without-debug",
            action="store_true",
            help="Run even with DEBUG off (a demo deployment). Without it the command refuses: its logins are"
            " staff/staff and alice/alice, and it prints their tokens.",
        )
        add_by_argument(parser)

    def handle(self, *args, allow_without_debug: bool = False, by: str | None = None, **options) -> None:
        """Create whatever of the demo data is missing, then print how to use it. It touches only the
        bookstore `demo` and its own users: a user of that name elsewhere is an error, never used."""
        if not settings.DEBUG and not allow_without_debug:
            raise CommandError(
                "seed_demo is for development (DEBUG on): it makes well-known logins and prints their tokens."
                " Pass --allow-without-debug to load the demo anyway."
            )
        actor = command_actor(by)
        with acting_as(actor), transaction.atomic():
            tenant = Tenant.objects.filter(slug="demo").first() or tenant_create(slug="demo", name="Demo Books")
            tokens = {}
            for username, is_staff in (("staff", True), ("alice", False)):
                user = User.objects.filter(username=username, tenant=tenant).first()
                if user is None and User.objects.filter(username=username).exists():
                    raise CommandError(
                        f"A user named {username!r} exists outside the demo bookstore; seed_demo leaves it alone."
                    )
                if user is None:
                    user, _ = user_create(
                        tenant=tenant, username=username, password=username, is_staff=is_staff, validate_password=False
                    )
                if not user.email:
                    # So that the demo's confirmation e-mails have somewhere to go (the console by default).
                    user.email = f"{username}@demo.shelfwise.localhost"
                    user.save(update_fields=["email"])
                # Only a hash of a token is stored, so the demo's tokens are new on every run; the
                # ones printed before are revoked so that they do not pile up.
                user_tokens_revoke(user=user)
                tokens[username] = token_issue(user=user).key
            known = set(Product.objects.filter(tenant=tenant).values_list("sku", flat=True))
            added = [
                product_create(tenant=tenant, sku=sku, title=title, price=price, stock=stock)
                for sku, title, price, stock in DEMO_CATALOG
                if sku not in known
            ]
        order = {"items": [{"sku": DEMO_CATALOG[0][0], "quantity": 1}], "payment_token": "tok_visa"}
        curl = (
            f"curl -s -X POST {BASE_URL}/api/v1/orders/ "
            f'-H "Authorization: Token {tokens["alice"]}" -H "Content-Type: application/json" '
            f"-d '{json.dumps(order)}'"
        )
        self.stdout.write(self.style.SUCCESS("Demo data ready."))
        self.stdout.write(f"  catalog: {len(DEMO_CATALOG)} books ({len(added)} added now)")
        self.stdout.write(f"  admin:   {BASE_URL}/admin/  (log in as staff/staff)")
        self.stdout.write("  logins:  staff/staff (the bookstore's staff), alice/alice (a customer)")
        self.stdout.write(f"  staff token: {tokens['staff']}")
        self.stdout.write(f"  alice token: {tokens['alice']}")
        self.stdout.write("  place an order as alice:")
        self.stdout.write(f"    {curl}")
