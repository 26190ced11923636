from django.apps import AppConfig


class FanoutConfig(AppConfig):
    """Bench-only event types and handlers: each event fans out to five counter updates.

    Installed only by `bench.settings`, so the product never subscribes these handlers.
    """

    name = "bench.fanout"
    label = "fanout"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from bench import experiments
        from bench.fanout import handlers

        handlers.subscribe_all()
        experiments.apply_all()
