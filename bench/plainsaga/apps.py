from django.apps import AppConfig


class PlainSagaConfig(AppConfig):
    """The plain Django + Celery saga the whole-saga benchmark compares against (bench/plainsaga/tasks.py).

    Installed only by `bench.settings`; the product never imports it.
    """

    name = "bench.plainsaga"
    label = "plainsaga"
    default_auto_field = "django.db.models.BigAutoField"
