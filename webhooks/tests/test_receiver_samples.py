"""The receiver samples of docs/webhooks.md verify a delivery that ShelfWise really signed, and
refuse one that was changed on the way: the documentation's code is run, not just shown."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from webhooks.tests.factories import endpoint_with_secret, publish_confirmed, send_due_now
from webhooks.tests.receiver import Receiver, running

pytestmark = pytest.mark.django_db(transaction=True)

PAGE = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def sample(title: str) -> str:
    """The code block of docs/webhooks.md titled `title`."""
    match = re.search(rf'```\w+ title="{re.escape(title)}"\n(.*?)\n```', PAGE.read_text(), re.DOTALL)
    assert match, f"no code block titled {title} in docs/webhooks.md"
    return match.group(1)


@pytest.fixture
def delivery(tenant, settings):
    """One real delivery: headers, raw body and the endpoint's secret."""
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    with running(Receiver()) as receiver:
        _, secret = endpoint_with_secret(tenant=tenant, url=receiver.url)
        event = publish_confirmed(tenant.pk)
        send_due_now()
    [received] = receiver.received
    return received.headers, received.body, secret, event


def test_the_python_sample_verifies_a_delivery_shelfwise_signed(delivery, capsys):
    headers, body, secret, event = delivery
    namespace: dict = {}
    exec(compile(sample("receiver.py"), "docs/webhooks.md:receiver.py", "exec"), namespace)  # noqa: S102
    handle = namespace["handle_delivery"]

    assert handle(body, headers, secret) == 200
    assert f"order.confirmed {event.order_id}" in capsys.readouterr().out
    assert handle(body, headers, secret) == 200, "a repeat is acknowledged"
    assert capsys.readouterr().out == "", "...and not applied again"
    assert handle(body.replace(b"order.confirmed", b"order.cancelled"), headers, secret) == 401
    assert handle(body, headers, "whsec_" + "A" * 44) == 401


def test_the_node_sample_verifies_a_delivery_shelfwise_signed(delivery, tmp_path):
    headers, body, secret, event = delivery
    (tmp_path / "receiver.js").write_text(sample("receiver.js"))
    script = tmp_path / "check.js"
    script.write_text(
        "const { verifyDelivery } = require('./receiver.js');\n"
        "const [body, headers, secret] = JSON.parse(require('fs').readFileSync(0, 'utf8'));\n"
        "const results = [body, body.replace('order.confirmed', 'order.cancelled')].map((b) => {\n"
        "  try { return verifyDelivery(b, headers, secret).subject; } catch (e) { return 'refused: ' + e.message; }\n"
        "});\n"
        "console.log(JSON.stringify(results));\n"
    )
    result = subprocess.run(
        [shutil.which("node") or "node", str(script)],
        input=json.dumps([body.decode(), headers, secret]),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert json.loads(result.stdout) == [str(event.order_id), "refused: bad signature"]
