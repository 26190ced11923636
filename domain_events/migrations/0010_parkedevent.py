from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("domain_events", "0009_sequencer_run_unless_busy"),
    ]

    operations = [
        migrations.CreateModel(
            name="ParkedEvent",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("reader", models.CharField(max_length=200)),
                ("position", models.BigIntegerField()),
                ("stored_event_id", models.BigIntegerField()),
                ("error", models.TextField()),
                ("parked_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("reader", "position"), name="parkedevent_reader_position")
                ],
            },
        ),
    ]
