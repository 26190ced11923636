"""Writes of the webhooks module: endpoints and their secrets, fan-out, sending, redelivery.

One job a file:

- `endpoints`: endpoints and their signing secrets, and the checks of a URL and of event types;
- `waiting`: what a delivery waits for (its subject's order, the endpoint's in-flight limit);
- `fan_out`: one delivery of an event per endpoint that wants it;
- `sending`: claim, POST, record, retry or bury, hand on; disabling an endpoint that keeps failing;
- `redelivery`: sending again by hand, and the sweep of `send_due_webhooks`;
- `queue`: the Celery messages (the task is named, not imported: `webhooks.tasks` imports the
  services, never the other way round).

How a delivery travels:
1. `deliveries_fan_out` (an in-process handler of every event, in the executor's transaction,
   so effectively once) writes one `WebhookDelivery` per matching active endpoint, and asks for a
   Celery message (queue `webhooks`) once that commits.
   A delivery that would have to wait (an earlier event of its subject still open for the
   endpoint, or the endpoint at its in-flight limit) gets no message.
2. `delivery_send` (the Celery task) claims the delivery in a short transaction: due, not
   leased, the endpoint under its in-flight limit, and no earlier event of the same subject
   still open for the endpoint. It POSTs with no transaction open, then records the attempt,
   fenced by its lease token, and hands on the endpoint's next delivery that may go: it claims
   and sends it in the same task, in the transaction of the outcome, whatever that was (up to
   `CHAIN_LIMIT` deliveries or `CHAIN_SECONDS`), then as a message. Waiting deliveries cost no
   message and no claim. POSTs reuse the worker's kept-alive connection to the receiver.
3. Retries come back as Celery messages with a countdown when they are near; far ones, and
   anything whose sender or message was lost, are handed on by `deliveries_enqueue_due`, the
   sweep of `send_due_webhooks`.

The at-least-once window: a worker killed after the receiver answered and before the attempt
was recorded sends again; the `webhook-id` (the delivery's id) is the same, so the receiver can
drop the copy.
"""

from webhooks.services.endpoints import (
    EndpointDisabled,
    endpoint_create,
    endpoint_delete,
    endpoint_rotate_secret,
    endpoint_set_active,
    endpoint_update,
    endpoint_url_validate,
    event_types_validate,
)
from webhooks.services.fan_out import deliveries_fan_out
from webhooks.services.redelivery import deliveries_enqueue_due, delivery_redeliver, endpoint_recover
from webhooks.services.sending import delivery_send

__all__ = [
    "EndpointDisabled",
    "deliveries_enqueue_due",
    "deliveries_fan_out",
    "delivery_redeliver",
    "delivery_send",
    "endpoint_create",
    "endpoint_delete",
    "endpoint_recover",
    "endpoint_rotate_secret",
    "endpoint_set_active",
    "endpoint_update",
    "endpoint_url_validate",
    "event_types_validate",
]
