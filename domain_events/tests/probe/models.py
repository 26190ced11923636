from django.db import models


class ProbeRecord(models.Model):
    """One row per handler run that committed."""

    handler = models.CharField(max_length=100)
    event_id = models.UUIDField()
    aggregate_id = models.UUIDField()
    n = models.IntegerField()
    correlation_id = models.CharField(max_length=128)
    causation_id = models.UUIDField(null=True)
    pid = models.IntegerField()
    created_at = models.DateTimeField(auto_now_add=True)


class ProbeSwitch(models.Model):
    """Behaviour switches read by the probe handlers, so tests can steer subprocesses too."""

    name = models.CharField(max_length=100, unique=True)
    value = models.FloatField(default=1)

    @classmethod
    def value_of(cls, name: str) -> float | None:
        return cls.objects.filter(name=name).values_list("value", flat=True).first()

    @classmethod
    def set(cls, name: str, value: float = 1) -> None:
        cls.objects.update_or_create(name=name, defaults={"value": value})


class ProbeChild(models.Model):
    """A row with a foreign key, so a handler can write a dangling reference on purpose."""

    parent = models.ForeignKey(ProbeSwitch, on_delete=models.CASCADE)
