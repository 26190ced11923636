from django.apps import AppConfig


class InboundConfig(AppConfig):
    """Inbound: the distributor's shipment notices, by signed webhook or from a RabbitMQ queue,
    recorded in an inbox and applied to orders through the `ApplyShipmentNotice` command."""

    name = "inbound"
    default_auto_field = "django.db.models.BigAutoField"
