"""The next month's partitions are made a week before it begins, no longer two months ahead
(`domain_events.partitions.NEXT_MONTH_LEAD`): every statement that does not name its month is
planned over each partition, an empty one too. This drops the empty partitions of months not
wanted yet; the relays' housekeeping makes them when their time comes. A partition that holds a
row is kept. PostgreSQL only (SQLite has no partitions).
"""

import re
from datetime import UTC, date, datetime

from django.db import migrations

from domain_events.partitions import months_wanted

TABLES = ("domain_events_storedevent", "domain_events_delivery")
_MONTH = re.compile(r"_(\d{4})_(\d{2})$")


def forward(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    wanted = months_wanted(datetime.now(tz=UTC))
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = to_regclass(%s) ORDER BY 1",
                [table],
            )
            for (name,) in cursor.fetchall():
                found = _MONTH.search(name)
                if found is None or date(int(found[1]), int(found[2]), 1) <= max(wanted):
                    continue
                cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {name})")  # noqa: S608
                if cursor.fetchone()[0]:
                    continue
                cursor.execute(f"ALTER TABLE {table} DETACH PARTITION {name}")
                cursor.execute(f"DROP TABLE {name}")


class Migration(migrations.Migration):
    dependencies = [("domain_events", "0017_partitioned_by_month")]

    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
