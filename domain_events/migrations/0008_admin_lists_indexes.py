from django.db import migrations, models


def drop_type_indexes(apps, schema_editor):
    """The indexes of `type` alone (with PostgreSQL's `_like` twin): (type, position) replaces them."""
    table = apps.get_model("domain_events", "StoredEvent")._meta.db_table
    with schema_editor.connection.cursor() as cursor:
        constraints = schema_editor.connection.introspection.get_constraints(cursor, table)
    for name, info in constraints.items():
        if info["index"] and not info["unique"] and info["columns"] == ["type"]:
            schema_editor.execute(f"DROP INDEX {schema_editor.quote_name(name)}")


def create_type_index(apps, schema_editor):
    model = apps.get_model("domain_events", "StoredEvent")
    schema_editor.execute(schema_editor._create_index_sql(model, fields=[model._meta.get_field("type")]))


class Migration(migrations.Migration):
    dependencies = [
        ("domain_events", "0007_sequencer_run_in_one_round_trip"),
    ]

    operations = [
        # Only the index goes: an AlterField would rebuild the table on SQLite, dropping its
        # position trigger (migration 0006) with it.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="storedevent",
                    name="type",
                    field=models.CharField(max_length=100),
                ),
            ],
            database_operations=[migrations.RunPython(drop_type_indexes, create_type_index)],
        ),
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(fields=["tenant_id", "id"], name="delivery_tenant"),
        ),
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(fields=["handler", "id"], name="delivery_handler"),
        ),
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(fields=["event_type", "id"], name="delivery_event_type"),
        ),
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(
                condition=models.Q(("status__in", ["failed", "dead", "skipped"])),
                fields=["status", "id"],
                name="delivery_troubled",
            ),
        ),
        migrations.AddIndex(
            model_name="storedevent",
            index=models.Index(fields=["type", "position"], name="storedevent_type_position"),
        ),
    ]
