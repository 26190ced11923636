"""The Celery application: `celery -A config worker` runs a worker."""

import os

import structlog
from celery import Celery
from celery.signals import celeryd_after_setup, task_postrun, task_prerun, worker_process_init, worker_ready
from django.db import close_old_connections

from core import tracing
from core.log_context import clear_log_context

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("shelfwise")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@celeryd_after_setup.connect
def consume_every_handler_queue(sender: str, instance, **kwargs) -> None:
    """Without -Q, a worker consumes the default queue, every queue a handler was given and every
    queue a task is routed to."""
    queues = instance.app.amqp.queues
    if getattr(queues, "_consume_from", None):
        return  # the operator chose queues with -Q
    from django.conf import settings

    from domain_events.bus import event_bus

    for route in settings.CELERY_TASK_ROUTES.values():
        if route.get("queue") and route["queue"] not in queues:
            queues.select_add(route["queue"])

    for subscription in event_bus.subscriptions():
        if subscription.queue and subscription.queue not in queues:
            queues.select_add(subscription.queue)


@task_prerun.connect
@task_postrun.connect
def keep_only_usable_connections(task=None, **kwargs) -> None:
    """Around each task in a worker, as around each web request: a connection that is broken,
    left in a transaction or older than CONN_MAX_AGE is closed; a good one serves the next task.
    (An eager task runs inside its caller's transaction, which is not for it to close.)"""
    if task is not None and not getattr(task.request, "is_eager", False):
        close_old_connections()


@task_prerun.connect
def start_with_an_empty_log_context(**kwargs) -> None:
    """Each task's log lines carry only what the task binds: nothing of the task before it."""
    clear_log_context()
    structlog.contextvars.clear_contextvars()


@worker_process_init.connect
def trace_each_pool_process(**kwargs) -> None:
    """Each child of a prefork worker sets up its own tracing (`core.tracing`): its exporter's
    thread and its process id are its own, so the parent, which runs no task, sets up none."""
    tracing.setup("worker")


@worker_ready.connect
def trace_a_worker_without_children(sender=None, **kwargs) -> None:
    """A worker whose pool runs tasks in its own process (solo, threads) traces there."""
    from celery.concurrency.prefork import TaskPool

    pool_cls = getattr(getattr(sender, "controller", None), "pool_cls", None)  # the sender is the consumer
    if not (isinstance(pool_cls, type) and issubclass(pool_cls, TaskPool)):
        tracing.setup("worker")
