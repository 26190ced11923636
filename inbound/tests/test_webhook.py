"""The signed webhook's refusals and the inbox, with a stand-in for the orders' answer."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.db import connection
from rest_framework.test import APIClient
from standardwebhooks import Webhook

from domain_events.bus import event_bus
from domain_events.queries import ApplyShipmentNotice, NoticeOutcome
from inbound.models import InboxMessage

pytestmark = pytest.mark.django_db

NOTICE = {
    "type": "shipped",
    "order_id": "5b0c3f52-7d1e-4a57-9b55-3f0a6f3e2c11",
    "tracking_number": "1Z999",
    "occurred_at": "2026-11-26T10:41:07Z",
}


@pytest.fixture
def secret(staff_api) -> str:
    response = staff_api.post("/api/v1/inbound/distributor/secret")
    assert response.status_code == 201
    assert set(response.json()) == {"secret"}
    return response.json()["secret"]


@pytest.fixture
def commands():
    asked: list[ApplyShipmentNotice] = []

    def answer(command: ApplyShipmentNotice) -> NoticeOutcome:
        asked.append(command)
        return NoticeOutcome(status="applied", events=("order.fulfilled",))

    with event_bus.answering(ApplyShipmentNotice, answer):
        yield asked


def post(slug: str, body: str, headers: dict[str, str]):
    return APIClient().post(
        f"/api/v1/inbound/{slug}/distributor/", data=body, content_type="application/json", **headers
    )


def signed(secret: str, body: str, message_id: str = "msg_1") -> dict[str, str]:
    now = datetime.now(tz=UTC)
    return {
        "HTTP_WEBHOOK_ID": message_id,
        "HTTP_WEBHOOK_TIMESTAMP": str(int(now.timestamp())),
        "HTTP_WEBHOOK_SIGNATURE": Webhook(secret).sign(msg_id=message_id, timestamp=now, data=body),
    }


def test_a_signed_notice_is_recorded_and_applied_once(tenant, secret, commands):
    body = json.dumps(NOTICE)
    for _ in range(2):
        response = post(tenant.slug, body, signed(secret, body))
        assert response.status_code == 202
    assert len(commands) == 1
    assert commands[0].kind == "shipped"
    assert commands[0].tenant_id == tenant.id
    message = InboxMessage.objects.get()
    assert (message.message_id, message.status, message.events) == ("msg_1", "applied", ["order.fulfilled"])


def test_bad_signature_and_unknown_bookstore_get_the_same_401(tenant, secret, commands):
    body = json.dumps(NOTICE)
    wrong = post(tenant.slug, body, signed("whsec_" + "A" * 44, body))
    unknown = post("no-such-store", body, signed(secret, body))
    unsigned = post(tenant.slug, body, {})
    tampered = post(tenant.slug, body.replace("1Z999", "1Z998"), signed(secret, body))
    for response in (wrong, unknown, unsigned, tampered):
        assert response.status_code == 401
        assert response.json() == {"detail": "The signature does not verify.", "code": "authentication_failed"}
    assert commands == []
    assert not InboxMessage.objects.exists()


def test_the_secret_needs_staff(customer_api):
    assert customer_api.post("/api/v1/inbound/distributor/secret").status_code == 403


def test_the_secret_is_encrypted_at_rest(tenant, secret):
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM inbound_distributorsecret")
        [(raw,)] = cursor.fetchall()
    assert secret not in raw
    assert secret.removeprefix("whsec_") not in raw


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("{not json", None),
        ("[1, 2]", "non_field_errors"),
        (json.dumps({**NOTICE, "type": "returned"}), "type"),
        (json.dumps({**NOTICE, "order_id": 12}), "order_id"),
        (json.dumps({**NOTICE, "tracking_number": ["x"]}), "tracking_number"),
        (json.dumps({**NOTICE, "carrier": "UPS"}), "carrier"),
        (json.dumps({k: v for k, v in NOTICE.items() if k != "occurred_at"}), "occurred_at"),
    ],
)
def test_a_body_that_is_not_a_notice_is_a_400_in_the_projects_shape(tenant, secret, commands, body, field):
    response = post(tenant.slug, body, signed(secret, body))
    assert response.status_code == 400
    data = response.json()
    assert data["code"] == "invalid"
    assert data["detail"]
    if field:
        assert field in data
    assert commands == []


def test_a_huge_body_is_refused_like_elsewhere(tenant, secret, commands, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({**NOTICE, "tracking_number": "x" * 2000})
    response = post(tenant.slug, body, signed(secret, body))
    assert response.status_code == 400
    assert response.json()["code"]
    assert commands == []
