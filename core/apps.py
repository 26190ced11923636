from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Errors, the exception handler and idempotency keys, shared by every module."""

    name = "core"
    default_auto_field = "django.db.models.BigAutoField"
