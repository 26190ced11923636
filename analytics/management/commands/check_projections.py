"""`manage.py check_projections [NAME …]` (CONTRACT §3): exit 0 when equal, 1 on drift."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from analytics.services import ProjectionBusy, UnknownProjection, projection_check, projection_get_many
from core.db import long_statements_allowed


class Command(BaseCommand):
    help = (
        "Rebuild read models into scratch tables and compare them with the live ones; print each difference "
        "(table, key, field, live value, rebuilt value) and how far each projection is behind the head."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("names", nargs="*", metavar="NAME")
        parser.add_argument("--batch-size", type=int, default=None, help="events per transaction")

    def handle(self, *args, names: list[str], batch_size: int | None, **options) -> None:
        """Check each projection named (all with none); exit 1 if any differs."""
        if batch_size is not None and batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        try:
            projections = projection_get_many(names=names)
        except UnknownProjection as exc:
            raise CommandError(str(exc)) from exc
        with long_statements_allowed():
            drift = False
            for projection in projections:
                try:
                    result = projection_check(name=projection.name, batch_size=batch_size)
                except ProjectionBusy as exc:
                    raise CommandError(str(exc)) from exc
                lag = result.lag
                self.stdout.write(
                    f"{result.name}: live at position {lag.position}, head {lag.head}, "
                    f"{lag.positions} positions ({lag.seconds:.1f}s) behind"
                    + (f"; last error: {lag.last_error}" if lag.last_error else "")
                )
                for d in result.differences:
                    key = ", ".join(f"{k}={v}" for k, v in d.key.items())
                    self.stdout.write(f"  {d.table} [{key}] {d.field}: live {d.live!r}, rebuilt {d.rebuilt!r}")
                if result.differences:
                    drift = True
                    self.stdout.write(
                        f"{result.name}: {len(result.differences)} differences at position {result.position}"
                    )
                else:
                    self.stdout.write(f"{result.name}: equal at position {result.position}")
            if drift:
                sys.exit(1)
