"""Webhook deliveries per second to a loopback receiver, beside the same POSTs made directly.

ShelfWise: one tenant with 5 endpoints subscribed to every event; N `order.confirmed` events are
published (fan-out writes 5 deliveries per event), then one Celery worker (concurrency 2, the default
per-endpoint limit of one request in flight) sends them: signing, claim, POST, outcome. The rate
is deliveries over the span from the first attempt to the last.

Reference, same run: the same number of POSTs of the same bodies with the same HTTP client
(`webhooks.transport.post`), from 2 threads, no database, no Celery.
"""

from __future__ import annotations

import os
import socket
import threading
import time

from bench.harness import Bench, fmt_rate, fmt_ratio, table
from bench.procs import PYTHON, BenchError

ENDPOINTS = 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebhooksBenchmark:
    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.events = int(os.environ.get("BENCH_WEBHOOK_EVENTS", "200"))
        self.result: dict[str, float] = {}

    def run(self) -> dict[str, float]:
        os.environ["WEBHOOK_ALLOW_PRIVATE_NETWORKS"] = "true"
        self.bench.setup_django()
        from django.conf import settings
        from django.db import transaction
        from django.test import override_settings

        from domain_events.bus import event_bus
        from domain_events.events import OrderConfirmed
        from tenants.services import tenant_create
        from webhooks.models import WebhookAttempt, WebhookDelivery
        from webhooks.services import endpoint_create

        port = _free_port()
        receiver = self.bench.service("webhook-receiver", [PYTHON, "-m", "bench.receiver", str(port)])
        receiver.wait_for("ready")
        url = f"http://127.0.0.1:{port}/hooks"
        tenant = tenant_create(slug=f"hooks-{int(time.time())}", name="Webhook bench")
        for n in range(ENDPOINTS):
            endpoint_create(tenant=tenant, url=f"{url}/{n}")
        from decimal import Decimal
        from uuid import uuid4

        # The fan-out runs here, right after each commit (in-process running on): this section
        # measures the sending, with no relay running.
        in_process = {**settings.DOMAIN_EVENTS, "RUN_ON_COMMIT": True}
        with override_settings(DOMAIN_EVENTS=in_process):
            for _ in range(self.events):
                with transaction.atomic():
                    event_bus.publish(
                        OrderConfirmed(
                            tenant_id=tenant.id, order_id=uuid4(), total_amount=Decimal("9.99"), currency="USD"
                        )
                    )
        expected = self.events * ENDPOINTS
        # This run's deliveries only: the orders benchmark's saga left its own in the table.
        ours = WebhookDelivery.objects.filter(tenant_id=tenant.id)
        if ours.count() != expected:
            raise BenchError(f"fan-out wrote {ours.count()} deliveries, not {expected}")
        bodies = [d.payload for d in ours[:expected]]

        worker = self.bench.service(
            "webhook-worker",
            [
                PYTHON,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-Q",
                "webhooks",
                "--concurrency",
                "2",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "WARNING",
            ],
            WEBHOOK_ALLOW_PRIVATE_NETWORKS="true",
        )
        deadline = time.monotonic() + 600
        while ours.filter(status="succeeded").count() < expected:
            if time.monotonic() > deadline:
                raise BenchError(f"webhook deliveries not all done after 600 s; see {self.bench.log_dir}")
            time.sleep(0.2)
        attempts = list(
            WebhookAttempt.objects.filter(delivery__tenant_id=tenant.id).values_list("started_at", "duration_ms")
        )
        first = min(a[0] for a in attempts)
        last = max(a[0].timestamp() + a[1] / 1000 for a in attempts)
        shelfwise = expected / (last - first.timestamp())
        worker.stop()

        direct = self._direct(url, bodies)
        receiver.stop()
        self.result = {
            "deliveries": expected,
            "attempts": len(attempts),
            "shelfwise_per_s": shelfwise,
            "direct_per_s": direct,
            "ratio": shelfwise / direct,
        }
        return self.result

    def _direct(self, url: str, bodies: list) -> float:
        import json

        from webhooks.transport import post

        per_thread = [bodies[i::2] for i in range(2)]

        def send(chunk: list) -> None:
            for body in chunk:
                post(url, body=json.dumps(body).encode(), headers={"content-type": "application/cloudevents+json"})

        threads = [threading.Thread(target=send, args=(chunk,)) for chunk in per_thread]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return len(bodies) / (time.monotonic() - started)

    def report(self) -> str:
        r = self.result
        return table(
            ["webhooks to a loopback receiver", "figure", "reference, same run", "ratio"],
            [
                [
                    f"{r['deliveries']:,} deliveries ({ENDPOINTS} endpoints, every event), 1 worker, concurrency 2",
                    f"{fmt_rate(r['shelfwise_per_s'])} deliveries/s",
                    f"the same POSTs direct, 2 threads: {fmt_rate(r['direct_per_s'])}/s",
                    fmt_ratio(r["ratio"]),
                ]
            ],
        )

    def summary_rows(self) -> list[dict]:
        r = self.result
        return [
            {
                "what": "webhook deliveries to a loopback receiver (5 endpoints)",
                "figure": f"{fmt_rate(r['shelfwise_per_s'])} deliveries/s",
                "ceiling": f"direct POSTs {fmt_rate(r['direct_per_s'])}/s",
                "ratio": fmt_ratio(r["ratio"]),
                "cpu_ratio": "",
            }
        ]
