"""Writes of the webhooks module: endpoints and their secrets, fan-out, sending, redelivery.

One job a file:

- `endpoints`: endpoints and their signing secrets, and the checks of a URL and of event types;
- `waiting`: what a delivery waits for (its subject's order, the endpoint's in-flight limit);
- `fan_out`: one delivery of an event per endpoint that wants it;
- `sending`: a task's turn: claim a batch, POST each, record, go on or hand on;
- `batches`: a batch's claim and outcomes (retry or bury, each delivery on its own), in a bounded
  number of statements; disabling an endpoint that keeps failing or answers `410 Gone`;
- `redelivery`: sending again by hand, and the sweep of `send_due_webhooks`;
- `queue`: the Celery messages (the task is named, not imported: `webhooks.tasks` imports the
  services, never the other way round).

How a delivery travels:
1. `deliveries_fan_out` (an in-process handler of every event, in the executor's transaction,
   so effectively once) writes one `WebhookDelivery` per matching active endpoint, and asks for a
   Celery message (queue `webhooks`) once that commits. A relay's batch of events fans them out
   together (`deliveries_fan_out_in_batch`): one query and one insert for all.
   A delivery that would have to wait (an earlier event of its subject still open for the
   endpoint, or the endpoint at its in-flight limit) gets no message.
2. `delivery_send` (the Celery task) claims, in one short transaction, a batch of its endpoint's
   deliveries that may go: due, not leased, no earlier event of the same subject still open for
   the endpoint, and the endpoint under its in-flight limit (its senders: a batch is one sender,
   one request at a time). One statement leases them under one token (`FOR UPDATE SKIP LOCKED`).
   It POSTs them in order with no transaction open, over the worker's kept-alive connection to
   the receiver, then writes every outcome in one statement, fenced by the lease token per
   delivery: each succeeds, retries on its own schedule or dies, whatever the others did. It goes
   on with the endpoint's next batch (up to `CHAIN_LIMIT` deliveries or `CHAIN_SECONDS`), then
   hands the next to the broker. Waiting deliveries cost no message and no claim.
3. Retries come back as Celery messages with a countdown when they are near; far ones, and
   anything whose sender or message was lost, are handed on by `deliveries_enqueue_due`, the
   sweep of `send_due_webhooks`.

The at-least-once window: a worker killed after the receiver answered and before the attempt
was recorded sends again (killed mid-batch, every delivery of the batch answered so far); the
`webhook-id` (the delivery's id) is the same, so the receiver can drop the copy.
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
from webhooks.services.fan_out import deliveries_fan_out, deliveries_fan_out_in_batch
from webhooks.services.redelivery import deliveries_enqueue_due, delivery_redeliver, endpoint_recover
from webhooks.services.sending import delivery_send

__all__ = [
    "EndpointDisabled",
    "deliveries_enqueue_due",
    "deliveries_fan_out",
    "deliveries_fan_out_in_batch",
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
