"""`manage.py archive_events --before YYYY-MM [--to DIR]` (docs/operations.md, Archiving old events)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from core.db import long_statements_allowed
from domain_events.archive import ArchiveCorrupt, ArchiveRefused, month_archive, month_start, months_before


class Command(BaseCommand):
    help = (
        "Write the stored events of each month before YYYY-MM to a compressed, self-describing file in DIR, check "
        "that it reads back with the same count and checksums, then remove the month from the database. A month "
        "that open or dead deliveries, a lagging position reader or an uncovered subscriber still need is refused."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--before", required=True, metavar="YYYY-MM", help="archive the months before this one")
        parser.add_argument(
            "--to", type=Path, default=Path("event-archive"), metavar="DIR", help="default: ./event-archive"
        )

    def handle(self, *args, before: str, to: Path, **options) -> None:
        """Archive each month before `--before`, oldest first; stop at the first that cannot be."""
        try:
            limit = month_start(before)
        except ValueError:
            raise CommandError(f"--before: {before!r} is not a month (YYYY-MM)") from None
        current = datetime.now(tz=UTC).date().replace(day=1)
        if limit > current:
            raise CommandError(
                f"--before {before}: only months that are over can be archived (this is {current:%Y-%m})"
            )
        interactive = sys.stderr.isatty()
        archived = 0
        with long_statements_allowed():
            for month in months_before(limit):
                bar = tqdm(desc=f"{month:%Y-%m}", unit=" events", disable=not interactive, file=sys.stderr)
                try:
                    done = month_archive(
                        month=month,
                        directory=to,
                        on_start=lambda total, bar=bar: bar.reset(total=total),
                        on_progress=bar.update,
                    )
                except (ArchiveRefused, ArchiveCorrupt) as exc:
                    raise CommandError(str(exc)) from exc
                finally:
                    bar.close()
                archived += 1
                self.stdout.write(f"{month:%Y-%m}: {done.events} events archived to {done.path}")
        self.stdout.write(f"{archived} month(s) archived." if archived else f"No stored events before {before}.")
