"""The chaos run's check that every distributor notice sent was applied once (`notices_verdict`),
on what a run could leave behind: the notices sent, the inbox's rows, the stored events and the
lost-shipment tasks. A run that applied everything once passes; a notice lost, parked, recorded
for another order, or applied twice fails, and the detail names it."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from chaos.checks import InboxRow, notices_verdict
from chaos.distributor import SentNotice

SHIPPED_THEN_DELIVERED = "order-a"
DELIVERED_BEFORE_SHIPPED = "order-b"
SHIPPED_THEN_LOST = "order-c"
FULFILLED_BY_STAFF_THEN_DELIVERED = "order-d"


@pytest.fixture
def world() -> dict:
    """Four orders whose notices were each applied once: every way a run sends them."""
    sent = [
        SentNotice("m1", SHIPPED_THEN_DELIVERED, "shipped", "webhook"),
        SentNotice("m2", SHIPPED_THEN_DELIVERED, "delivered", "broker", copies=2),
        SentNotice("m3", DELIVERED_BEFORE_SHIPPED, "delivered", "webhook", copies=2),
        SentNotice("m4", DELIVERED_BEFORE_SHIPPED, "shipped", "broker"),
        SentNotice("m5", SHIPPED_THEN_LOST, "shipped", "broker"),
        SentNotice("m6", SHIPPED_THEN_LOST, "lost", "webhook"),
        SentNotice("m7", FULFILLED_BY_STAFF_THEN_DELIVERED, "delivered", "broker"),
    ]
    inbox = [
        InboxRow("m1", SHIPPED_THEN_DELIVERED, "shipped", "webhook", "applied", ("order.fulfilled",)),
        InboxRow("m2", SHIPPED_THEN_DELIVERED, "delivered", "broker", "applied", ("order.delivered",)),
        # Out of order: "delivered" fulfils the order first, the late "shipped" has nothing to do.
        InboxRow(
            "m3", DELIVERED_BEFORE_SHIPPED, "delivered", "webhook", "applied", ("order.fulfilled", "order.delivered")
        ),
        InboxRow("m4", DELIVERED_BEFORE_SHIPPED, "shipped", "broker", "nothing_to_do"),
        InboxRow("m5", SHIPPED_THEN_LOST, "shipped", "broker", "applied", ("order.fulfilled",)),
        InboxRow("m6", SHIPPED_THEN_LOST, "lost", "webhook", "applied", ("order.shipment_lost",)),
        InboxRow("m7", FULFILLED_BY_STAFF_THEN_DELIVERED, "delivered", "broker", "applied", ("order.delivered",)),
    ]
    recorded = Counter(
        {
            (SHIPPED_THEN_DELIVERED, "order.fulfilled"): 1,
            (SHIPPED_THEN_DELIVERED, "order.delivered"): 1,
            (DELIVERED_BEFORE_SHIPPED, "order.fulfilled"): 1,
            (DELIVERED_BEFORE_SHIPPED, "order.delivered"): 1,
            (SHIPPED_THEN_LOST, "order.fulfilled"): 1,
            (SHIPPED_THEN_LOST, "order.shipment_lost"): 1,
            # The staff's fulfilment: an event no notice recorded.
            (FULFILLED_BY_STAFF_THEN_DELIVERED, "order.fulfilled"): 1,
            (FULFILLED_BY_STAFF_THEN_DELIVERED, "order.delivered"): 1,
        }
    )
    return {
        "sent": sent,
        "inbox": inbox,
        "recorded": recorded,
        "lost_tasks": Counter({SHIPPED_THEN_LOST: 1}),
        "staff_fulfilled": {FULFILLED_BY_STAFF_THEN_DELIVERED},
        "errors": [],
    }


def verdict(world: dict):
    return notices_verdict(**world)


def row(world: dict, message_id: str) -> InboxRow:
    return next(r for r in world["inbox"] if r.message_id == message_id)


def test_every_notice_applied_once_passes(world):
    check = verdict(world)
    assert check.ok, check.detail
    assert check.detail.startswith("7 notices (webhook 3, broker 4; sent twice on purpose 2): applied 6,")
    assert "nothing to do (overtaken) 1" in check.detail


def test_a_delivered_notice_applied_twice_fails(world):
    world["recorded"][(SHIPPED_THEN_DELIVERED, "order.delivered")] = 2
    check = verdict(world)
    assert not check.ok
    assert "applied twice 1" in check.detail
    assert f"{SHIPPED_THEN_DELIVERED}: order.delivered recorded 2" in check.detail


def test_a_copy_recorded_as_a_second_notice_fails(world):
    """The copy of m2 taken as a notice of its own: its row names a second `order.delivered`."""
    world["inbox"].append(replace(row(world, "m2"), message_id="m2-copy"))
    world["recorded"][(SHIPPED_THEN_DELIVERED, "order.delivered")] = 2
    check = verdict(world)
    assert not check.ok
    assert "applied twice 1" in check.detail
    assert "not sent 1: ['m2-copy']" in check.detail


def test_a_shipped_notice_that_fulfils_a_staff_fulfilled_order_again_fails(world):
    world["inbox"][-1] = replace(row(world, "m7"), events=("order.fulfilled", "order.delivered"))
    check = verdict(world)
    assert not check.ok
    assert f"applied twice 1: ['{FULFILLED_BY_STAFF_THEN_DELIVERED}: order.fulfilled" in check.detail


def test_a_lost_shipment_task_opened_twice_fails(world):
    world["lost_tasks"][SHIPPED_THEN_LOST] = 2
    check = verdict(world)
    assert not check.ok
    assert "2 lost-shipment tasks for 1 lost notices" in check.detail


def test_a_notice_never_recorded_fails(world):
    """m6 ("lost" over the webhook) never reached the inbox: no row, no event, no task."""
    world["inbox"].remove(row(world, "m6"))
    del world["recorded"][(SHIPPED_THEN_LOST, "order.shipment_lost")]
    world["lost_tasks"].clear()
    check = verdict(world)
    assert not check.ok
    assert "not recorded 1: ['m6']" in check.detail
    assert "not applied 2" in check.detail


def test_a_notice_recorded_but_not_applied_fails(world):
    """m2's row says it had nothing to do, and the order was never delivered."""
    world["inbox"][1] = replace(row(world, "m2"), status="nothing_to_do", events=())
    del world["recorded"][(SHIPPED_THEN_DELIVERED, "order.delivered")]
    check = verdict(world)
    assert not check.ok
    assert f"not applied 1: ['{SHIPPED_THEN_DELIVERED}: order.delivered recorded 0" in check.detail


def test_a_parked_notice_fails(world):
    world["inbox"][6] = replace(row(world, "m7"), status="parked", events=())
    del world["recorded"][(FULFILLED_BY_STAFF_THEN_DELIVERED, "order.delivered")]
    check = verdict(world)
    assert not check.ok
    assert "parked 1: ['m7: parked']" in check.detail


def test_a_notice_recorded_for_another_order_or_way_fails(world):
    world["inbox"][0] = replace(row(world, "m1"), source="broker")
    check = verdict(world)
    assert not check.ok
    assert "misread 1" in check.detail


def test_a_notice_the_distributor_could_not_send_fails(world):
    world["errors"].append("order order-e: the delivered notice m8: 400")
    check = verdict(world)
    assert not check.ok
    assert "distributor errors 1" in check.detail
