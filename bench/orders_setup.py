"""Seed the order benchmark through the product's own doors, and count the queries of one order.

    DJANGO_SETTINGS_MODULE=bench.settings python -m bench.orders_setup --products 100 --stock 1000000

Tenant and users come from the management commands (`create_tenant`, `create_user`), the catalog
from `POST products/` as staff. Then one `POST orders/` runs under `CaptureQueriesContext`, once
with the handlers dispatched after commit (as served) and once without (the request alone). Prints
one JSON line: what the load generator and the raw-SQL ceiling need, and the query counts.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import uuid
from decimal import Decimal

import django


def command_output(*args: str) -> str:
    from django.core.management import call_command

    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=100)
    parser.add_argument("--stock", type=int, default=1_000_000)
    args = parser.parse_args()

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, override_settings

    from domain_events.bus import Mode, event_bus
    from domain_events.events import OrderPlaced
    from tenants.models import User

    slug = f"bench-{uuid.uuid4().hex[:8]}"
    tenant_id = command_output("create_tenant", slug, "--name", "Bench Books", "--currency", "USD")
    staff_token = command_output("create_user", slug, f"{slug}-staff", "--staff")
    customer_token = command_output("create_user", slug, f"{slug}-customer")
    # The plain-DRF reference and the raw-SQL ceiling place their orders for customers of their own.
    command_output("create_user", slug, f"{slug}-plain")
    command_output("create_user", slug, f"{slug}-raw")
    customer_id, plain_customer_id, raw_customer_id = (
        str(User.objects.get(username=f"{slug}-{who}").pk) for who in ("customer", "plain", "raw")
    )

    client = Client()
    staff = {"HTTP_AUTHORIZATION": f"Token {staff_token}"}
    rng = random.Random(7)
    products = []
    for i in range(args.products):
        body = {
            "sku": f"BENCH-{i:04d}",
            "title": f"Benchmark Book Volume {i}",
            "price": str(Decimal(rng.randint(500, 4999)) / 100),
            "stock": args.stock,
        }
        response = client.post("/api/v1/products/", body, content_type="application/json", **staff)
        if response.status_code != 201:
            raise SystemExit(f"POST products/ gave {response.status_code}: {response.content[:500]!r}")
        products.append({"sku": body["sku"], "title": body["title"], "price": body["price"]})

    customer = {"HTTP_AUTHORIZATION": f"Token {customer_token}"}
    order_body = {"items": [{"sku": p["sku"], "quantity": 1} for p in products[:3]], "payment_token": "tok_visa"}

    def count_queries() -> tuple[int, list[str]]:
        with CaptureQueriesContext(connection) as ctx:
            response = client.post("/api/v1/orders/", order_body, content_type="application/json", **customer)
        if response.status_code != 201:
            raise SystemExit(f"POST orders/ gave {response.status_code}: {response.content[:500]!r}")
        return len(ctx.captured_queries), [q["sql"][:160] for q in ctx.captured_queries]

    count_queries()  # warm: first-request caches (content types, URL resolver) are not the steady state
    served, served_sql = count_queries()
    with override_settings(DOMAIN_EVENTS={**settings.DOMAIN_EVENTS, "DISPATCH_ON_COMMIT": False}):
        request_only, request_sql = count_queries()

    subscribers = [s for s in event_bus.subscriptions_for(OrderPlaced) if s.mode is not Mode.INLINE]
    print(
        json.dumps(
            {
                "tenant_slug": slug,
                "tenant_id": tenant_id,
                "currency": "USD",
                "customer_id": customer_id,
                "customer_token": customer_token,
                "staff_token": staff_token,
                "plain_customer_id": plain_customer_id,
                "raw_customer_id": raw_customer_id,
                "products": products,
                "order_placed_handlers": [s.name for s in subscribers],
                "order_placed_handler_modes": {s.name: str(s.mode) for s in subscribers},
                "all_handlers": sorted(s.name for s in event_bus.subscriptions() if not s.name.startswith("bench.")),
                "queries": {
                    "post_order_served": served,
                    "post_order_request_only": request_only,
                    "served_sql": served_sql,
                    "request_only_sql": request_sql,
                },
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
