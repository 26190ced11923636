from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Errors, the exception handler and idempotency keys, shared by every module."""

    name = "core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from core import checks  # noqa: F401  (registers the deploy check of the development key)
