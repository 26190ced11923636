"""The next month's partitions are made a week before it begins, no longer two months ahead
(`domain_events.partitions.NEXT_MONTH_LEAD`): every statement that does not name its month is
planned over each partition, an empty one too. This drops the empty partitions of months not
wanted yet; the relays' housekeeping makes them when their time comes. A partition that holds a
row is kept. PostgreSQL only (SQLite has no partitions).
"""

from datetime import UTC, datetime

from django.db import migrations

from domain_events import partitions


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    latest = max(partitions.months_wanted(datetime.now(tz=UTC)))
    with schema_editor.connection.cursor() as cursor:
        for table in partitions.KEYS:
            for partition in partitions.month_partitions(table):
                if partition.month is None or partition.month <= latest:
                    continue
                cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {partition.name})")  # noqa: S608
                if not cursor.fetchone()[0]:
                    partitions.drop_month(table=table, month=partition.month)


class Migration(migrations.Migration):
    dependencies = [("domain_events", "0017_partitioned_by_month")]

    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
