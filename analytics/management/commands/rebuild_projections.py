"""`manage.py rebuild_projections [NAME …] [--batch-size N]` (CONTRACT §3)."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from analytics.services import ProjectionBusy, UnknownProjection, projection_get_many, projection_rebuild
from core.db import long_statements_allowed


class Command(BaseCommand):
    help = (
        "Rebuild read models from the stored events into new tables, then swap them in at once; the API serves "
        "the previous figures until then. With no NAME, every projection."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("names", nargs="*", metavar="NAME")
        parser.add_argument("--batch-size", type=int, default=None, help="events per transaction")

    def handle(self, *args, names: list[str], batch_size: int | None, **options) -> None:
        """Rebuild each projection named; an unknown name is refused before anything changes."""
        if batch_size is not None and batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        try:
            projections = projection_get_many(names=names)
        except UnknownProjection as exc:
            raise CommandError(str(exc)) from exc
        with long_statements_allowed():
            interactive = sys.stderr.isatty()
            for projection in projections:
                bar = tqdm(desc=projection.name, unit=" events", disable=not interactive, file=sys.stderr)
                try:
                    result = projection_rebuild(
                        name=projection.name,
                        batch_size=batch_size,
                        on_start=lambda total, bar=bar: bar.reset(total=total),
                        on_progress=bar.update,
                    )
                except ProjectionBusy as exc:
                    raise CommandError(str(exc)) from exc
                finally:
                    bar.close()
                rate = result.events / result.seconds if result.seconds else 0.0
                self.stdout.write(
                    f"{result.name}: rebuilt from {result.events} events in {result.seconds:.1f}s "
                    f"({rate:.0f} events/s), live at position {result.position}"
                )
