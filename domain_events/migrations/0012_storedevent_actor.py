"""Who caused each event: `actor`, `system` for the events recorded before it was kept.

The column keeps its database default, so that an insert by a publisher still running older code
(a rolling deploy) records `system` rather than failing. SQLite adds a NOT NULL column by rebuilding
the table, which drops the insert trigger that numbers positions: it is created again here.
"""

import importlib

from django.db import migrations, models


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        earlier = importlib.import_module("domain_events.migrations.0011_positions_at_insert_and_streams")
        schema_editor.execute(earlier.SQLITE_TRIGGER)


class Migration(migrations.Migration):
    dependencies = [
        ("domain_events", "0011_positions_at_insert_and_streams"),
    ]

    operations = [
        migrations.AddField(
            model_name="storedevent",
            name="actor",
            field=models.CharField(db_default="system", default="system", max_length=100),
        ),
        migrations.RunPython(forward, migrations.RunPython.noop),
    ]
