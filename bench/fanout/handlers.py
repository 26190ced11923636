"""Five handlers per bench event type; each bumps its own counter for the event's account.

The delivery record written by `domain_events` is the idempotent inbox, committed together with
the handler's update, so a handler here is the counter update and nothing else: the very statement
the raw-SQL ceilings run (`bench.ceiling.BUMP_COUNTER`), so that the platform and its ceiling do
the same work and the comparison measures dispatch, not the ORM's cost of compiling an UPDATE.
"""

from collections.abc import Callable

from django.db import connection

from bench.fanout.events import CeleryFanoutHappened, FanoutHappened
from bench.fanout.names import BUMP_COUNTER, CELERY_HANDLERS, ON_COMMIT_HANDLERS
from domain_events.bus import event_bus


def count_for(handler: str) -> Callable[[FanoutHappened | CeleryFanoutHappened], None]:
    """A handler that bumps the (handler, account) counter of the event."""

    def count(event: FanoutHappened | CeleryFanoutHappened) -> None:
        with connection.cursor() as cursor:
            cursor.execute(BUMP_COUNTER, (handler, event.account))

    count.__name__ = f"count_{handler.rsplit('_', 1)[-1]}"
    return count


def subscribe_all() -> None:
    for name in ON_COMMIT_HANDLERS:
        event_bus.subscribe(FanoutHappened, count_for(name), mode="on_commit", name=name)
    for name in CELERY_HANDLERS:
        event_bus.subscribe(CeleryFanoutHappened, count_for(name), mode="celery", name=name)
