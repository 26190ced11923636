from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("fanout", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="Inbox",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("handler", models.CharField(max_length=150)),
                ("event_id", models.UUIDField()),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("handler", "event_id"), name="fanout_inbox_key")],
            },
        ),
    ]
