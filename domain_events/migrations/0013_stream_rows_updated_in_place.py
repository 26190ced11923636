from django.db import migrations

# A stream row is updated by every event of its aggregate: room on each page lets PostgreSQL update
# it in place (a HOT update, no new entry in its primary key's index), which is most of what the
# row costs a publish.
POSTGRES_FORWARD = "ALTER TABLE domain_events_stream SET (fillfactor = 50)"
POSTGRES_BACKWARD = "ALTER TABLE domain_events_stream RESET (fillfactor)"


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_FORWARD)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POSTGRES_BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("domain_events", "0012_storedevent_actor")]

    operations = [migrations.RunPython(forward, backward)]
