"""The W3C trace context each event was published in (`core.tracing`), null when tracing is off.

Nullable and without a default, so PostgreSQL adds it without rewriting the table, SQLite with a
plain `ALTER TABLE ADD COLUMN` (its position trigger stays), and an insert by a publisher still
running older code (a rolling deploy) records null.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("domain_events", "0014_fence_on_the_events_table_lock"),
    ]

    operations = [
        migrations.AddField(
            model_name="storedevent",
            name="traceparent",
            field=models.CharField(blank=True, max_length=55, null=True),
        ),
    ]
