"""Probe handlers: each records its run in `ProbeRecord`, and misbehaves when a switch says so."""

import os
import time

from django.db import connection

from domain_events.bus import event_bus
from domain_events.registry import registry
from domain_events.running import defer
from domain_events.tests.probe.events import ProbeCalledOut, ProbeFollowedUp, ProbeHappened
from domain_events.tests.probe.models import ProbeChild, ProbeRecord, ProbeSwitch


class ProbeFailure(RuntimeError):
    pass


def _row(handler: str, event) -> ProbeRecord:
    return ProbeRecord(
        handler=handler,
        event_id=event.event_id,
        aggregate_id=event.aggregate_id,
        n=event.n,
        correlation_id=event.correlation_id,
        causation_id=event.causation_id,
        pid=os.getpid(),
    )


def _record(handler: str, event) -> None:
    _row(handler, event).save()


def _misbehave(handler: str, event) -> None:
    delay = ProbeSwitch.value_of(f"{handler}:sleep") or ProbeSwitch.value_of(f"{handler}:sleep:{event.n}")
    if delay:
        time.sleep(delay)
    if ProbeSwitch.value_of(f"{handler}:kill:{event.n}"):
        # Its own backend ends: the connection, and the transaction it carried, are gone.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    if ProbeSwitch.value_of(f"{handler}:fail") or ProbeSwitch.value_of(f"{handler}:fail:{event.n}"):
        raise ProbeFailure(f"{handler} told to fail on n={event.n}")


def _lock_in_turn(event) -> None:
    """With `probe.fast:interleave` set, lock one of two rows (by n) and linger: two batches run side
    by side then each hold the row the other needs next, as reservations of overlapping products do."""
    if not ProbeSwitch.value_of("probe.fast:interleave"):
        return
    name = "row-a" if event.n in (0, 3) else "row-b"
    ProbeSwitch.objects.select_for_update().get(name=name)
    time.sleep(0.3)


def record_fast(event: ProbeHappened) -> None:
    _misbehave("probe.fast", event)
    _lock_in_turn(event)
    if ProbeSwitch.value_of("probe.fast:dangling"):
        # PostgreSQL checks foreign keys at commit unless told otherwise.
        ProbeChild.objects.create(parent_id=2_000_000_000)
    _record("probe.fast", event)


def record_other(event: ProbeHappened) -> None:
    _misbehave("probe.other", event)
    # With `probe.other:defer`, its record is left to the end of an optimistic pass (`running.defer`).
    if ProbeSwitch.value_of("probe.other:defer") and defer("probe.other", _record_all_other, event):
        return
    _record("probe.other", event)


def _record_all_other(events: list[ProbeHappened]) -> None:
    """The records of a pass's `probe.other` runs, in one statement; with `probe.other:defer_fail`,
    a statement that fails in the database first (the transaction is aborted)."""
    if ProbeSwitch.value_of("probe.other:defer_fail"):
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 / 0")
    ProbeRecord.objects.bulk_create(_row("probe.other", e) for e in events)


def record_slow(event: ProbeHappened) -> None:
    _misbehave("probe.slow", event)
    _record("probe.slow", event)


def follow_up(event: ProbeHappened) -> None:
    if event.n >= 1000:
        _record("probe.follow_up", event)
        event_bus.publish(ProbeFollowedUp(tenant_id=event.tenant_id, probe_id=event.probe_id, n=event.n + 1))


def record_follow_up(event: ProbeFollowedUp) -> None:
    _record("probe.followed", event)


def record_tracked(events, context) -> None:
    """A position reader: one record per event, under the reader's target ("live" or a rebuild)."""
    if ProbeSwitch.value_of("probe.tracker:fail"):
        _record("probe.tracker:" + context.target, events[0])
        raise ProbeFailure("probe.tracker told to fail")
    for event in events:
        _record("probe.tracker:" + context.target, event)


def call_out(event: ProbeCalledOut) -> None:
    """Stands for a call to a provider: it must run with no transaction (and so no row lock) of the
    executor's open, and records what it saw in its own short transaction."""
    if connection.in_atomic_block:
        raise ProbeFailure("called out inside a transaction")
    _misbehave("probe.call_out", event)
    steal = ProbeSwitch.value_of("probe.call_out:steal_lease")
    if steal:
        from domain_events.models import Delivery

        Delivery.objects.filter(handler="probe.call_out", stored_event__event_id=event.event_id).update(
            lease_token=None
        )
    _record("probe.call_out", event)


def refuse_negative(event: ProbeHappened) -> None:
    if event.n < 0:
        raise ValueError("n must not be negative")


def subscribe_all() -> None:
    event_bus.subscribe(ProbeHappened, refuse_negative, mode="inline", name="probe.inline_guard")
    event_bus.subscribe(ProbeHappened, record_fast, mode="on_commit", name="probe.fast")
    event_bus.subscribe(ProbeHappened, record_other, mode="on_commit", name="probe.other")
    event_bus.subscribe(ProbeHappened, record_slow, mode="celery", name="probe.slow", queue="probe")
    event_bus.subscribe(ProbeHappened, follow_up, mode="on_commit", name="probe.follow_up")
    event_bus.subscribe(ProbeFollowedUp, record_follow_up, mode="on_commit", name="probe.followed")
    event_bus.subscribe(ProbeCalledOut, call_out, mode="celery", name="probe.call_out", atomic=False)
    event_bus.track(ProbeHappened, record_tracked, name="probe.tracker", batch_size=3)


@registry.upcaster("probe.measured", from_version=1)
def _measured_v1_to_v2(payload: dict) -> dict:
    data = dict(payload)
    data["value_cm"] = data.pop("cm")
    return data


@registry.upcaster("probe.measured", from_version=2)
def _measured_v2_to_v3(payload: dict) -> dict:
    data = dict(payload)
    data["value_mm"] = data.pop("value_cm") * 10
    data.setdefault("unit_note", "converted from centimetres")
    return data
