"""`manage.py check_projections [NAME …] [--with-archive DIR]` (docs/operations.md, Commands): exit 0 when
equal, 1 on drift."""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import CommandError

from analytics.management.commands._projection_command import ProjectionCommand
from analytics.services import ArchiveNeeded, ProjectionBusy, projection_check
from domain_events.archive import ArchiveCorrupt


class Command(ProjectionCommand):
    help = (
        "Rebuild read models into scratch tables and compare them with the live ones; print each difference "
        "(table, key, field, live value, rebuilt value) and how far each projection is behind the head."
    )

    def handle_projections(self, projections: list, *, batch_size: int | None, archive: Path | None) -> None:
        """Check each projection named (all with none); exit 1 if any differs."""
        drift = False
        for projection in projections:
            try:
                result = projection_check(name=projection.name, batch_size=batch_size, archive=archive)
            except (ProjectionBusy, ArchiveNeeded, ArchiveCorrupt) as exc:
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
                self.stdout.write(f"{result.name}: {len(result.differences)} differences at position {result.position}")
            else:
                self.stdout.write(f"{result.name}: equal at position {result.position}")
        if drift:
            sys.exit(1)
