# The idempotency key model moves here from orders: its table (created by orders' migrations,
# hence the dependency) is kept with its rows; only Django's record of the model changes owner.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def content_type_to_core(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label="orders", model="idempotencykey").update(app_label="core")


def content_type_to_orders(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label="core", model="idempotencykey").update(app_label="orders")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("orders", "0002_idempotency_key_index_by_user"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="IdempotencyKey",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("key", models.CharField(max_length=255)),
                        ("fingerprint", models.CharField(max_length=64)),
                        (
                            "state",
                            models.CharField(
                                choices=[("in_progress", "In Progress"), ("completed", "Completed")],
                                default="in_progress",
                                max_length=16,
                            ),
                        ),
                        ("response_status", models.PositiveSmallIntegerField(blank=True, null=True)),
                        ("response_body", models.JSONField(blank=True, null=True)),
                        ("created_at", models.DateTimeField()),
                        ("locked_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "user",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="idempotency_keys",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={
                        "db_table": "orders_idempotencykey",
                        "indexes": [models.Index(fields=["user", "created_at"], name="idempotency_key_user_created")],
                        "constraints": [
                            models.UniqueConstraint(fields=("user", "key"), name="idempotency_key_unique_per_user"),
                            models.CheckConstraint(
                                condition=models.Q(
                                    ("state", "in_progress"),
                                    models.Q(("response_status__isnull", False), ("state", "completed")),
                                    _connector="OR",
                                ),
                                name="idempotency_key_completed_has_response",
                            ),
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(content_type_to_core, content_type_to_orders),
    ]
