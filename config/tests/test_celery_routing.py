"""Celery routing: payments, e-mail and webhooks each have their own queue; everything else goes
to the default queue `celery`. A worker started with `-Q` consumes only those queues."""

from config.celery import app
from domain_events.bus import event_bus
from domain_events.subscriptions import DEFAULT_QUEUE, Mode

QUEUES = {
    "payments.capture_payment_for_order": "payments",
    "payments.void_or_refund_cancelled_order": "payments",
    "notifications.email_customer_about_order": "email",
}


def route_of(task_name: str) -> str | None:
    return app.amqp.router.route({}, task_name).get("queue").name


def test_each_kind_of_slow_work_has_its_own_queue():
    celery_handlers = {s.name: s.celery_queue for s in event_bus.subscriptions() if s.mode is Mode.CELERY}
    business = {name: queue for name, queue in celery_handlers.items() if not name.startswith("probe.")}
    assert business == QUEUES
    assert route_of("webhooks.send_webhook") == "webhooks"
    assert route_of("domain_events.run_delivery") == DEFAULT_QUEUE == "celery", "the rest: the default queue"
    assert len({*QUEUES.values(), "webhooks", DEFAULT_QUEUE}) == 4
