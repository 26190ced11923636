"""`manage.py rebuild_projections [NAME …] [--batch-size N] [--with-archive DIR]` (docs/operations.md, Commands)."""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import CommandError
from tqdm import tqdm

from analytics.management.commands._projection_command import ProjectionCommand
from analytics.services import ArchiveNeeded, ProjectionBusy, projection_rebuild
from domain_events.archive import ArchiveCorrupt


class Command(ProjectionCommand):
    help = (
        "Rebuild read models from the stored events into new tables, then swap them in at once; the API serves "
        "the previous figures until then. With no NAME, every projection. With --with-archive, the archived months "
        "are replayed first."
    )

    def handle_projections(self, projections: list, *, batch_size: int | None, archive: Path | None) -> None:
        """Rebuild each projection named; an unknown name is refused before anything changes."""
        interactive = sys.stderr.isatty()
        for projection in projections:
            bar = tqdm(desc=projection.name, unit=" events", disable=not interactive, file=sys.stderr)
            try:
                result = projection_rebuild(
                    name=projection.name,
                    batch_size=batch_size,
                    on_start=lambda total, bar=bar: bar.reset(total=total),
                    on_progress=bar.update,
                    archive=archive,
                )
            except (ProjectionBusy, ArchiveNeeded, ArchiveCorrupt) as exc:
                raise CommandError(str(exc)) from exc
            finally:
                bar.close()
            rate = result.events / result.seconds if result.seconds else 0.0
            self.stdout.write(
                f"{result.name}: rebuilt from {result.events} events in {result.seconds:.1f}s "
                f"({rate:.0f} events/s), live at position {result.position}"
            )
