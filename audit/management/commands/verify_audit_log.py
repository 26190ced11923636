from django.core.management.base import BaseCommand, CommandError

from audit.selectors import (
    READER,
    audit_archived_heads,
    audit_chain_shortfall,
    audit_chain_verify,
    audit_reader_state,
    audit_tenants,
)
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Check each tenant's audit hash chain: names the first entry that fails and prints each chain's length "
        "and head hash; compares each chain with the stored events up to its reader's checkpoint (archived months "
        "by their recorded counts and heads). Exit 0 when "
        "intact, 1 when tampered, when a chain lacks stored events, or when its reader fails or lags."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--tenant", metavar="SLUG", help="Only this tenant's chain.")
        parser.add_argument(
            "--expect-head",
            metavar="HASH",
            help="A head hash recorded earlier elsewhere: fail unless it is still an entry of the (or a) chain.",
        )
        parser.add_argument(
            "--max-lag",
            metavar="SECONDS",
            type=float,
            default=0.0,
            help="Tolerate a reader this many seconds behind (default 0: any stored event not yet in the trail fails).",
        )

    def handle(self, *args, tenant: str | None, expect_head: str | None, max_lag: float, **options) -> None:
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
            # Every tenant, not only those with entries: an empty chain beside stored events is a finding.
            tenant_ids = sorted(set(names) | set(audit_tenants()), key=str)
        reader = audit_reader_state()
        failed = False
        expected_found = False
        for tenant_id in tenant_ids:
            report = audit_chain_verify(tenant_id=tenant_id, expect_head=expect_head)
            label = names.get(tenant_id, str(tenant_id))
            self.stdout.write(f"{label}: {report.length} entries, head {report.head}")
            if report.problem:
                self.stdout.write(f"  TAMPERED: {report.problem}")
                failed = True
            for problem in audit_archived_heads(tenant_id=tenant_id):
                self.stdout.write(f"  TAMPERED: {problem}")
                failed = True
            shortfall = audit_chain_shortfall(tenant_id=tenant_id, upto=reader.position)
            if shortfall > 0:
                self.stdout.write(
                    f"  BEHIND: {shortfall} stored event(s) up to position {reader.position} (the reader's "
                    "checkpoint) are not in the chain"
                )
                failed = True
            elif shortfall < 0:
                self.stdout.write(
                    f"  TAMPERED: up to position {reader.position} the chain has {-shortfall} more entries than "
                    "there are stored events"
                )
                failed = True
            expected_found = expected_found or bool(report.contains_expected)
        if expect_head is not None and not expected_found:
            self.stdout.write(f"TAMPERED: the expected head {expect_head} is no longer an entry of the chain")
            failed = True
        self.stdout.write(f"Reader {READER}: at position {reader.position} of {reader.head}")
        if reader.last_error:
            self.stdout.write(f"READER FAILING: {READER} cannot append to the trail: {reader.last_error}")
            failed = True
        elif reader.position < reader.head and reader.seconds_behind > max_lag:
            self.stdout.write(
                f"READER BEHIND: {reader.head - reader.position} position(s) not yet in the trail, the oldest "
                f"recorded {reader.seconds_behind:.0f} s ago (--max-lag {max_lag:g} s): is a relay running?"
            )
            failed = True
        if failed:
            raise SystemExit(1)
        self.stdout.write("Audit log intact.")
