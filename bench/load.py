"""A bounded HTTP load client: one connection, closed loop, POST orders until time or count runs out.

    python -m bench.load --port P --seconds S --max-requests N --spec JSON [--plain | --saga] [--rate R]
                         [--warmup W] [--seed I]

Runs on the standard library only (http.client), so the client costs little CPU beside the server.
gunicorn's sync workers close the connection after each response; http.client reconnects.
With --rate, the client sends at most R requests per second (paced: the latency of one order is then
measured downstream, from its placing to its confirmation). Prints the usual worker JSON line with
every latency and the count of each status code.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import time
from collections import Counter

from bench.procs import child_ready, child_report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--max-requests", type=int, required=True)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--plain", action="store_true", help="POST the plain-DRF reference endpoint.")
    parser.add_argument("--saga", action="store_true", help="POST the plain saga's endpoint (bench/plainsaga).")
    parser.add_argument("--rate", type=float, default=0.0, help="requests per second at most (0: closed loop)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    spec = json.loads(args.spec)
    rng = random.Random(args.seed)
    products = spec["products"]

    if args.plain:
        path = "/bench/plain-orders/"
        headers = {"Content-Type": "application/json"}

        def body() -> bytes:
            lines = rng.sample(products, 3)
            return json.dumps(
                {
                    "tenant_id": spec["tenant_id"],
                    "customer_id": spec["plain_customer_id"],
                    "currency": spec["currency"],
                    "items": [
                        {"sku": p["sku"], "title": p["title"], "quantity": 1, "unit_price": p["price"]} for p in lines
                    ],
                }
            ).encode()
    else:
        path = "/bench/saga-orders/" if args.saga else "/api/v1/orders/"
        headers = {"Content-Type": "application/json", "Authorization": f"Token {spec['customer_token']}"}

        def body() -> bytes:
            lines = rng.sample(products, 3)
            return json.dumps(
                {"items": [{"sku": p["sku"], "quantity": 1} for p in lines], "payment_token": "tok_visa"}
            ).encode()

    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)

    def post() -> int:
        conn.request("POST", path, body(), headers)
        response = conn.getresponse()
        response.read()
        if response.will_close:
            conn.close()
        return response.status

    for _ in range(args.warmup):
        post()
    child_ready()
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    start = time.time()
    deadline = time.monotonic() + args.seconds
    interval = 1 / args.rate if args.rate > 0 else 0.0
    next_at = time.monotonic()
    while len(latencies) < args.max_requests and time.monotonic() < deadline:
        if interval:
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
        t0 = time.perf_counter()
        statuses[post()] += 1
        latencies.append(time.perf_counter() - t0)
    child_report(start=start, end=time.time(), count=len(latencies), latencies=latencies, statuses=dict(statuses))


if __name__ == "__main__":
    main()
