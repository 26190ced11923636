from django.db import models


class Counter(models.Model):
    """One counter per (handler, account); the bench seeds the rows and each delivery bumps one.

    Every event names its own account, so no two events contend for a row: the benchmark measures
    dispatch, not lock waits. After a run every counter must read exactly 1 (once-only delivery).
    """

    handler = models.CharField(max_length=150)
    account = models.IntegerField()
    value = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["handler", "account"], name="fanout_counter_key")]

    def __str__(self) -> str:
        return f"{self.handler}[{self.account}] = {self.value}"


class Inbox(models.Model):
    """The plain-Celery reference's idempotent inbox: one row per (handler, event) it applied."""

    handler = models.CharField(max_length=150)
    event_id = models.UUIDField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["handler", "event_id"], name="fanout_inbox_key")]

    def __str__(self) -> str:
        return f"{self.handler} {self.event_id}"
