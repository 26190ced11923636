# The idempotency key model now belongs to core (core 0001 takes over its table, rows and all):
# orders forgets the model without touching the database.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_initial"),
        ("orders", "0002_idempotency_key_index_by_user"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="IdempotencyKey")],
            database_operations=[],
        ),
    ]
