from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The `seed_demo` command; no models."""

    name = "demo"
