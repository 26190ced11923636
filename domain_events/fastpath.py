"""The fast path: right after the publisher's commit, hand its events' deliveries on.

In-process handlers run here and now; Celery handlers get their message. Claims recorded by a
handler inside an executor batch are gathered by the batch and handed on once after its commit.
Whatever this misses (a crash, a broker outage) the relays hand on when the publisher's lease on
the deliveries runs out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.db import transaction

from domain_events import subscribers
from domain_events.claims import Claim
from domain_events.executor import Report, collect, execute
from domain_events.handoff import send_to_celery
from domain_events.subscriptions import Mode, Subscription, subscriptions

logger = logging.getLogger(__name__)


def after_commit(claims: Sequence[Claim]) -> None:
    """Hand `claims` on when the current transaction commits (nothing happens on rollback)."""
    if collect(claims):
        return
    transaction.on_commit(lambda: hand_on(claims))


def hand_on(claims: Sequence[Claim], *, by_relay: bool = False) -> Report:
    """Send celery-mode claims to the broker and run the others here. Never raises.

    `by_relay`: the claims come from a relay's lease rather than from a publisher's commit.
    """
    report = Report()
    try:
        subscribers.register_once()
    except Exception:
        # The deliveries stay leased; a relay runs them once the lease is over.
        logger.exception("could not record this process's handlers; the relay will hand %d deliveries on", len(claims))
        return report
    local: list[Claim] = []
    remote: list[tuple[Claim, Subscription]] = []
    for claim in claims:
        subscription = subscriptions.get(claim.handler)
        if subscription is not None and subscription.mode is Mode.CELERY:
            remote.append((claim, subscription))
        else:
            local.append(claim)
    if remote:
        report.sent += send_to_celery(remote, by_relay=by_relay)
    if local:
        try:
            report.add(execute(local))
        except Exception:
            logger.exception("dispatch of %d deliveries failed; the relay will retry them", len(local))
    return hand_on_follow_ups(report)


def hand_on_follow_ups(report: Report) -> Report:
    """Hand on what the handlers of a committed batch published; the counts stay the batch's."""
    follow_ups, report.follow_ups = report.follow_ups, []
    if follow_ups:
        hand_on(follow_ups)
    return report
