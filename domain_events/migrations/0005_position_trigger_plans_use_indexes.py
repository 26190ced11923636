"""Keep the position trigger's statements on their indexes whatever the table statistics say.

PL/pgSQL caches its plans per session. If the outbox table was analysed while empty, a cached
plan may scan the whole table for every event once a backlog has built up. The trigger only ever
looks rows up by key, so index access is always right for it.
"""

from django.db import migrations


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER FUNCTION domain_events_assign_position() SET enable_seqscan = off")


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER FUNCTION domain_events_assign_position() RESET enable_seqscan")


class Migration(migrations.Migration):
    dependencies = [("domain_events", "0004_delivery_without_foreign_key_constraint")]

    operations = [migrations.RunPython(forward, backward)]
