from django.core.management.base import BaseCommand, CommandError

from audit.selectors import audit_chain_verify, audit_tenants
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Check each tenant's audit hash chain: names the first entry that fails and prints each chain's length "
        "and head hash. Exit 0 when intact, 1 when tampered."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--tenant", metavar="SLUG", help="Only this tenant's chain.")
        parser.add_argument(
            "--expect-head",
            metavar="HASH",
            help="A head hash recorded earlier elsewhere: fail unless it is still an entry of the (or a) chain.",
        )

    def handle(self, *args, tenant: str | None, expect_head: str | None, **options) -> None:
        if expect_head is not None:
            expect_head = expect_head.strip().lower()
            if len(expect_head) != 64 or any(c not in "0123456789abcdef" for c in expect_head):
                raise CommandError("--expect-head: a head hash is 64 hexadecimal digits")
        names = {t.id: t.slug for t in Tenant.objects.all()}
        if tenant is not None:
            match = [tid for tid, slug in names.items() if slug == tenant]
            if not match:
                raise CommandError(f"--tenant: no tenant with the slug {tenant!r}")
            tenant_ids = match
        else:
            tenant_ids = audit_tenants()
        tampered = False
        expected_found = False
        for tenant_id in tenant_ids:
            report = audit_chain_verify(tenant_id=tenant_id, expect_head=expect_head)
            label = names.get(tenant_id, str(tenant_id))
            self.stdout.write(f"{label}: {report.length} entries, head {report.head}")
            if report.problem:
                self.stdout.write(f"  TAMPERED: {report.problem}")
                tampered = True
            expected_found = expected_found or bool(report.contains_expected)
        if expect_head is not None and not expected_found:
            self.stdout.write(f"TAMPERED: the expected head {expect_head} is no longer an entry of the chain")
            tampered = True
        if tampered:
            raise SystemExit(1)
        self.stdout.write("Audit log intact.")
