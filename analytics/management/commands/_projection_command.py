"""What `rebuild_projections` and `check_projections` share: the names, `--batch-size`,
`--with-archive`, refusing an unknown name before anything changes, and lifting the statement
timeout for their own work."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from analytics.services import UnknownProjection, projection_get_many
from core.db import long_statements_allowed


class ProjectionCommand(BaseCommand):
    def add_arguments(self, parser) -> None:
        parser.add_argument("names", nargs="*", metavar="NAME")
        parser.add_argument("--batch-size", type=int, default=None, help="events per transaction")
        parser.add_argument(
            "--with-archive",
            metavar="DIR",
            type=Path,
            default=None,
            help="replay the months archive_events wrote to DIR first, then the table",
        )

    def handle(self, *args, names: list[str], batch_size: int | None, with_archive: Path | None, **options) -> None:
        if batch_size is not None and batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        if with_archive is not None and not with_archive.is_dir():
            raise CommandError(f"--with-archive: {with_archive} is not a directory")
        try:
            projections = projection_get_many(names=names)
        except UnknownProjection as exc:
            raise CommandError(str(exc)) from exc
        with long_statements_allowed():
            self.handle_projections(projections, batch_size=batch_size, archive=with_archive)

    def handle_projections(self, projections: list, *, batch_size: int | None, archive: Path | None) -> None:
        raise NotImplementedError
