"""An index behind the admin's actor filter and search: one actor exactly, or a kind of actor by
its prefix (`staff:`), which PostgreSQL serves from a btree only with the pattern operator class."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0002_append_only"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="auditentry",
            index=models.Index(
                fields=["actor", "id"], name="audit_actor", opclasses=["varchar_pattern_ops", "int8_ops"]
            ),
        ),
    ]
