"""Late subscribers and rolling deploys: every per-event handler gets every event from the position
where it was first deployed.

A process that runs handlers records each of them at first sight (`Subscriber`, with the last
position drawn then). A publisher running older code writes no delivery for a handler it does not know;
relays that know the handler cover that gap: they write the missing deliveries of every matching
event between the handler's covered position and the readers' head (`domain_events.head`: nothing
below it can still commit), and move the covered position on.

Covering costs a scan of every new event per handler, so relays do it only when the set of
subscribers may have changed: on their first pass, when a process records its handlers (it
notifies the relays, `SUBSCRIBERS_CHANGED`), and, for a publisher still running older code after
the last process of the new code started, every `COVER_BACKSTOP` seconds (`domain_events.relay`).

Handlers that exist in the table but in no running code are orphans: `manage.py check` warns
about them, the admin lists them, claim scans never see their deliveries (claims name the
handlers of the process), and the relays' retention rule removes their open deliveries once the
handler has not been seen for `ORPHAN_RETENTION`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from domain_events import sql
from domain_events.conf import domain_events_settings
from domain_events.head import drawn, head
from domain_events.models import Delivery, StoredEvent, Subscriber
from domain_events.subscriptions import Mode, Subscription, subscriptions, type_names

logger = logging.getLogger(__name__)

_registered: set[str] = set()

# The payload of the NOTIFY a process sends when it records its handlers (on the relays' channel).
SUBSCRIBERS_CHANGED = "subscribers"


def _deferred() -> list[Subscription]:
    return [s for s in subscriptions.all() if s.mode is not Mode.INLINE]


def register(found: list[Subscription] | None = None) -> None:
    """Record this process's handlers (first sight fixes their first position), and that they are
    alive now; the relays are told, so they cover what publishers without them left out."""
    now = timezone.now()
    found = found if found is not None else _deferred()
    if found and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql.NOTIFY, [domain_events_settings()["NOTIFY_CHANNEL"], SUBSCRIBERS_CHANGED])
    for subscription in found:
        types = type_names(subscription)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    sql.REGISTER_SUBSCRIBER,
                    {
                        "name": subscription.name,
                        "mode": subscription.mode.value,
                        "types": json.dumps(types),
                        "position": drawn(),
                        "now": now,
                    },
                )
        else:
            updated = Subscriber.objects.filter(name=subscription.name).update(
                mode=subscription.mode.value, event_types=types, last_seen_at=now
            )
            if not updated:
                position = drawn()
                try:
                    with transaction.atomic():
                        Subscriber.objects.create(
                            name=subscription.name,
                            mode=subscription.mode.value,
                            event_types=types,
                            first_position=position,
                            covered_position=position,
                            last_seen_at=now,
                        )
                except IntegrityError:
                    pass
        _registered.add(subscription.name)


def register_once() -> bool:
    """`register`, the first time this process dispatches (and for handlers subscribed since);
    True if it recorded any."""
    missing = [s for s in _deferred() if s.name not in _registered]
    if missing:
        register(missing)
    return bool(missing)


def cover() -> int:
    """Write the deliveries that publishers without this process's handlers did not write.

    Returns how many were written. Each subscriber row is locked while it is covered, so relays
    side by side share the work.
    """
    found = {s.name: s for s in _deferred()}
    if not found:
        return 0
    written = 0
    now = timezone.now()
    with transaction.atomic():
        position = head()
        rows = list(
            Subscriber.objects.select_for_update(skip_locked=True)
            .filter(name__in=list(found), covered_position__lt=position)
            .values_list("name", "covered_position")
        )
        for name, covered in rows:
            types = type_names(found[name])
            written += _write_missing(name, types, after=covered, upto=position, now=now)
            Subscriber.objects.filter(name=name).update(covered_position=position, last_seen_at=now)
    if written:
        logger.info("wrote %d deliveries that publishers without the handler left out", written)
    return written


def _write_missing(name: str, types: list[str], *, after: int, upto: int, now) -> int:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                sql.COVER_SUBSCRIBER, {"name": name, "types": types, "after": after, "head": upto, "now": now}
            )
            return cursor.rowcount
    events = StoredEvent.objects.filter(position__gt=after, position__lte=upto, type__in=types).exclude(
        deliveries__handler=name
    )
    return _write_deliveries(name, events, now)


def _write_deliveries(name: str, events, now) -> int:
    """A pending delivery of `name` for each of `events` (one that exists already stays as it is)."""
    created = Delivery.objects.bulk_create(
        [
            Delivery(
                stored_event_id=e.pk,
                event_recorded_at=e.recorded_at,
                revision=e.revision,
                handler=name,
                event_type=e.type,
                tenant_id=e.tenant_id,
                aggregate_id=e.aggregate_id,
                next_attempt_at=now,
            )
            for e in events
        ],
        ignore_conflicts=True,
    )
    return len(created)


def cover_before(name: str, aggregate_id, revision: int) -> tuple[int, str, object] | None:
    """Before `name` runs an event of an aggregate: write its deliveries for the aggregate's earlier
    events (by revision) that publishers without it left out and no relay has covered yet; returns
    (id, status, next attempt) of the first delivery of `name` still to finish before it, if any.

    The executor asks only when its lock statement found such an event (a rolling deploy), so the
    usual delivery pays nothing here.
    """
    subscriber = Subscriber.objects.filter(name=name).values_list("covered_position", "event_types").first()
    if subscriber is None:
        return None
    covered, types = subscriber
    now = timezone.now()
    missing = StoredEvent.objects.filter(
        aggregate_id=aggregate_id, revision__lt=revision, position__gt=covered, type__in=types
    ).exclude(deliveries__handler=name)
    if written := _write_deliveries(name, missing, now):
        logger.info("wrote %d deliveries of %s that publishers without the handler left out", written, name)
    return (
        Delivery.objects.filter(
            handler=name, aggregate_id=aggregate_id, revision__lt=revision, status__in=Delivery.BLOCKING
        )
        .order_by("revision")
        .values_list("pk", "status", "next_attempt_at")
        .first()
    )


@dataclass(frozen=True)
class Orphan:
    name: str
    last_seen_at: object
    open_deliveries: int


def orphans() -> list[Orphan]:
    """Handlers recorded by some deployment that this code no longer subscribes."""
    known = {s.name for s in subscriptions.all()}
    found = []
    for name, last_seen in Subscriber.objects.exclude(name__in=known).values_list("name", "last_seen_at"):
        count = Delivery.objects.filter(handler=name, status__in=Delivery.OPEN).count()
        found.append(Orphan(name, last_seen, count))
    return found
