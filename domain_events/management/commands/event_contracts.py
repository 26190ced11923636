from django.core.management.base import BaseCommand, CommandError

from domain_events.schemas import CONTRACTS_DIR, contract_problems, write_current_schemas


class Command(BaseCommand):
    help = (
        "Check the published event contracts: each event class against the committed schema of its "
        f"version, and the schemas, examples and upcasters of every past version ({CONTRACTS_DIR})."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--write",
            action="store_true",
            help="First write the schema of every current version that has none (never overwrites one).",
        )

    def handle(self, *args, write: bool, **options) -> None:
        if write:
            for path in write_current_schemas():
                self.stdout.write(f"wrote {path}")
        problems = contract_problems()
        if problems:
            raise CommandError("\n".join(["The event contracts are broken:", *problems]))
        self.stdout.write("Every published event matches its contract.")
