"""Counting an endpoint's requests in flight reads its live leases alone, however many deliveries the
endpoint has had: the count runs for every event fanned out and every batch claimed."""

import json
from datetime import timedelta
from uuid import uuid4

import pytest
from django.db import connection
from django.utils import timezone

from core.db import insert_rows
from webhooks import sql
from webhooks.models import DeliveryStatus, WebhookDelivery
from webhooks.tests.factories import endpoint_with_secret

pytestmark = pytest.mark.django_db


def scans_of_in_flight(plan: dict) -> list[dict]:
    """The plan's scans of the deliveries under the alias `f` (the in-flight count)."""
    found, nodes = [], [plan]
    while nodes:
        node = nodes.pop()
        nodes.extend(node.get("Plans", ()))
        if node.get("Relation Name") == WebhookDelivery._meta.db_table and node.get("Alias") == "f":
            found.append(node)
        if node.get("Node Type") == "Bitmap Heap Scan" and node.get("Alias") == "f":
            found.extend(node.get("Plans", ()))
    return found


def test_the_in_flight_count_reads_only_live_leases_of_an_endpoint_with_a_long_history(tenant):
    endpoint, _ = endpoint_with_secret(tenant=tenant, url="http://127.0.0.1:9/x")
    now = timezone.now()

    def delivery(n: int, **fields) -> WebhookDelivery:
        return WebhookDelivery(
            tenant_id=tenant.pk,
            endpoint=endpoint,
            event_id=uuid4(),
            event_type="order.confirmed",
            subject=str(uuid4()),
            position=n,
            payload={},
            next_attempt_at=now,
            **fields,
        )

    finished = [delivery(n, status=DeliveryStatus.SUCCEEDED, completed_at=now) for n in range(3000)]
    leased = [delivery(3000 + n, lease_token=uuid4(), leased_until=now + timedelta(seconds=30)) for n in range(2)]
    insert_rows(finished + leased)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {WebhookDelivery._meta.db_table}")
        cursor.execute(
            "EXPLAIN (FORMAT JSON) " + sql.FAN_OUT_AT,
            {
                "n": [0],
                "event_id": [uuid4()],
                "tenant": [tenant.pk],
                "subject": ["s"],
                "occurred": [now],
                "position": [3002],
                "now": now,
            },
        )
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    scans = scans_of_in_flight(plan[0]["Plan"])
    assert scans, plan
    assert {s.get("Index Name") for s in scans if "Index Name" in s} == {"webhook_delivery_leased"}, scans
    assert all("leased_until" in s.get("Index Cond", "") for s in scans if "Index Name" in s), scans
