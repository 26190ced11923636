"""Raw-SQL ceilings: the statements the platform runs, hand-written with psycopg 3.

One process per invocation, one persistent connection, psycopg's server-side binding (repeated
statements get prepared). Run by `bench/run.py`; each job waits at the start line, then prints
`{"start", "end", "count", ...}` as one JSON line.

    python -m bench.ceiling publish  --count N --account-base A [--fast-path] [--record platform|plain]
    python -m bench.ceiling fanout   --batch B
    python -m bench.ceiling fastpath --count N --account-base A
    python -m bench.ceiling order    --seconds S --max-count N --spec JSON
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from bench.fanout.names import BUMP_COUNTER, FANOUT_TYPE, NOTE
from bench.fanout.names import ON_COMMIT_HANDLERS as HANDLERS
from bench.procs import CpuMeter, child_ready, child_report

GRACE_SECONDS = 10

INSERT_EVENT = """
INSERT INTO domain_events_storedevent
    (event_id, type, version, tenant_id, aggregate_id, occurred_at, recorded_at, correlation_id, causation_id, payload)
VALUES (%s, %s, 1, %s, %s, now(), now(), %s, %s, %s)
RETURNING id, recorded_at
"""


def insert_deliveries_sql(count: int) -> str:
    row = "(%s, %s, %s, %s, %s, 'pending', 0, now() + %s * interval '1 second', %s, '', '', now(), now(), NULL, %s)"
    return (
        "INSERT INTO domain_events_delivery (stored_event_id, handler, event_type, tenant_id, aggregate_id, status,"
        " attempts, next_attempt_at, lease_token, last_error, resolution, created_at, updated_at, completed_at,"
        " event_recorded_at)"
        " VALUES " + ", ".join([row] * count) + " RETURNING id"
    )


INSERT_DELIVERIES = insert_deliveries_sql(len(HANDLERS))

# The relay's claim and the executor's lock, in one statement: a batch of due deliveries.
CLAIM_DUE = """
SELECT d.id, d.handler, (e.payload->>'account')::int
  FROM domain_events_delivery d JOIN domain_events_storedevent e ON e.id = d.stored_event_id
 WHERE d.status IN ('pending', 'failed') AND d.next_attempt_at <= now()
 ORDER BY d.next_attempt_at
 LIMIT %s
   FOR UPDATE OF d SKIP LOCKED
"""
# The fast path's lock of the deliveries it just recorded.
LOCK_OWN = """
SELECT d.id, d.handler, (e.payload->>'account')::int
  FROM domain_events_delivery d JOIN domain_events_storedevent e ON e.id = d.stored_event_id
 WHERE d.id = ANY(%s) AND d.status IN ('pending', 'failed') AND d.lease_token = %s
 ORDER BY d.stored_event_id, d.id
   FOR UPDATE OF d SKIP LOCKED
"""
MARK_SUCCEEDED = """
UPDATE domain_events_delivery
   SET status = 'succeeded', attempts = attempts + 1, lease_token = NULL, last_error = '',
       completed_at = now(), updated_at = now()
 WHERE id = ANY(%s)
"""


def connect() -> tuple[psycopg.Connection, CpuMeter]:
    conn = psycopg.connect(os.environ["BENCH_DATABASE_URL"], autocommit=True)
    return conn, CpuMeter(conn.info.backend_pid)


def publish_one(
    cur: psycopg.Cursor, tenant_id: uuid.UUID, account: int, fast_path: bool
) -> tuple[list[int], uuid.UUID]:
    event_id = uuid.uuid4()
    subject_id = uuid.uuid4()
    payload = {"subject_id": str(subject_id), "account": account, "note": NOTE}
    cur.execute(
        INSERT_EVENT, (event_id, FANOUT_TYPE, tenant_id, subject_id, str(uuid.uuid4()), event_id, Jsonb(payload))
    )
    stored_id, recorded_at = cur.fetchone()
    token = uuid.uuid4() if fast_path else None
    grace = GRACE_SECONDS if fast_path else 0
    params: list[object] = []
    for handler in HANDLERS:
        params += [stored_id, handler, FANOUT_TYPE, tenant_id, subject_id, grace, token, recorded_at]
    cur.execute(INSERT_DELIVERIES, params)
    return [row[0] for row in cur.fetchall()], token


def run_handlers(cur: psycopg.Cursor, rows: list[tuple[int, str, int]]) -> None:
    for _, handler, account in rows:
        cur.execute(BUMP_COUNTER, (handler, account))
    cur.execute(MARK_SUCCEEDED, ([row[0] for row in rows],))


EVENTS_PER_AGGREGATE = 4


def recording_statement(*, streams: bool) -> dict:
    """The platform's recording statement and its event columns, from `domain_events.sql` (in a
    Django process): the bench measures what the platform runs. `streams=False`: the same statement
    without the stream row."""
    from domain_events import sql

    statement = sql.insert_event_and_deliveries(notify=False)
    if not streams:
        statement = statement.replace(sql.stream_cte(), sql.plain_event_cte())
    return {"statement": statement, "columns": list(sql.EVENT_INSERT_COLUMNS), "streams": streams}


class Recorder:
    """The platform's recording statement (`domain_events.sql.insert_event_and_deliveries`): the
    event, its position drawn by the column's default, its aggregate's stream row upserted, and its
    deliveries, in one statement. `streams=False`: the same statement without the stream row, for
    the reference line (the bench also drops the position's default for that line).

    The statement comes from `recording_statement`, given by the bench (`--statement`, a JSON file:
    no Django set-up in each publisher) or made here."""

    def __init__(self, *, streams: bool, statement_file: str | None = None) -> None:
        if statement_file:
            spec = json.loads(Path(statement_file).read_text())
            if spec["streams"] != streams:
                raise SystemExit(
                    f"{statement_file} is not the statement of --record {'platform' if streams else 'plain'}"
                )
        else:
            import django

            django.setup()
            spec = recording_statement(streams=streams)
        self.streams = streams
        self.statement = spec["statement"]
        self.columns = spec["columns"]

    def record(self, cur: psycopg.Cursor, tenant_id: uuid.UUID, aggregate_id: uuid.UUID, account: int) -> None:
        event_id = uuid.uuid4()
        payload = {"subject_id": str(aggregate_id), "account": account, "note": NOTE}
        columns = {
            "event_id": event_id,
            "type": FANOUT_TYPE,
            "version": 1,
            "tenant_id": tenant_id,
            "aggregate_id": aggregate_id,
            "occurred_at": datetime.now(UTC),
            "recorded_at": datetime.now(UTC),
            "correlation_id": str(uuid.uuid4()),
            "causation_id": event_id,
            "actor": "system",
            "traceparent": None,
            "payload": Jsonb(payload),
        }
        stream = [aggregate_id, "subject", tenant_id] if self.streams else []
        now = datetime.now(UTC)
        due = [datetime.fromtimestamp(now.timestamp() + GRACE_SECONDS, tz=UTC)] * len(HANDLERS)
        cur.execute(
            self.statement,
            [
                *stream,
                *(columns[c] for c in self.columns),
                FANOUT_TYPE,
                tenant_id,
                aggregate_id,
                uuid.uuid4(),
                now,
                now,
                list(HANDLERS),
                due,
                [None] * len(HANDLERS),
            ],
        )
        cur.fetchall()


def job_publish(args: argparse.Namespace) -> None:
    recorder = Recorder(streams=args.record == "platform", statement_file=args.statement) if args.record else None
    conn, meter = connect()
    cur = conn.cursor()
    tenant_id = uuid.uuid4()
    child_ready(meter)
    start = time.time()
    aggregate_id = uuid.uuid4()
    for i in range(args.count):
        if i % EVENTS_PER_AGGREGATE == 0:
            aggregate_id = uuid.uuid4()
        with conn.transaction():
            if recorder is not None:
                recorder.record(cur, tenant_id, aggregate_id, args.account_base + i)
            else:
                publish_one(cur, tenant_id, args.account_base + i, fast_path=args.fast_path)
    child_report(meter, start=start, end=time.time(), count=args.count)


def job_fanout(args: argparse.Namespace) -> None:
    conn, meter = connect()
    cur = conn.cursor()
    child_ready(meter)
    start = time.time()
    deliveries = batches = 0
    while True:
        with conn.transaction():
            rows = cur.execute(CLAIM_DUE, (args.batch,)).fetchall()
            if rows:
                run_handlers(cur, rows)
        if not rows:
            break
        deliveries += len(rows)
        batches += 1
    child_report(meter, start=start, end=time.time(), deliveries=deliveries, batches=batches)


def job_fastpath(args: argparse.Namespace) -> None:
    conn, meter = connect()
    cur = conn.cursor()
    tenant_id = uuid.uuid4()
    child_ready(meter)
    start = time.time()
    for i in range(args.count):
        with conn.transaction():
            ids, token = publish_one(cur, tenant_id, args.account_base + i, fast_path=True)
        with conn.transaction():
            rows = cur.execute(LOCK_OWN, (ids, token)).fetchall()
            run_handlers(cur, rows)
    child_report(meter, start=start, end=time.time(), count=args.count)


INSERT_ORDER = """
INSERT INTO orders_order (id, tenant_id, customer_id, status, cancellation_reason, total_amount, currency,
                          tracking_number, shipped_at, created_at, updated_at)
VALUES (%s, %s, %s, 'placed', '', %s, %s, '', NULL, now(), now())
"""
INSERT_ITEMS = """
INSERT INTO orders_orderitem (order_id, sku, title, quantity, unit_price)
VALUES (%s, %s, %s, 1, %s), (%s, %s, %s, 1, %s), (%s, %s, %s, 1, %s)
"""


def job_order(args: argparse.Namespace) -> None:
    """The order transaction: 1 order + 3 items + 1 outbox event + a delivery per subscribed handler."""
    spec = json.loads(args.spec)
    handlers = spec["order_placed_handlers"]
    insert_deliveries = insert_deliveries_sql(len(handlers))
    products = spec["products"]
    tenant_id, customer_id, currency = spec["tenant_id"], spec["raw_customer_id"], spec["currency"]
    rng = random.Random(args.seed)
    conn, meter = connect()
    cur = conn.cursor()
    child_ready(meter)
    start = time.time()
    deadline = time.monotonic() + args.seconds
    latencies: list[float] = []
    while len(latencies) < args.max_count and time.monotonic() < deadline:
        t0 = time.perf_counter()
        lines = rng.sample(products, 3)
        order_id, event_id = uuid.uuid4(), uuid.uuid4()
        total = sum(Decimal(p["price"]) for p in lines)
        payload = {
            "order_id": str(order_id),
            "customer_id": customer_id,
            "lines": [{"sku": p["sku"], "title": p["title"], "quantity": 1, "unit_price": p["price"]} for p in lines],
            "total_amount": str(total),
            "currency": currency,
            "payment_token": "tok_visa",
        }
        items: list[object] = []
        for p in lines:
            items += [order_id, p["sku"], p["title"], Decimal(p["price"])]
        with conn.transaction():
            cur.execute(INSERT_ORDER, (order_id, tenant_id, customer_id, total, currency))
            cur.execute(INSERT_ITEMS, items)
            cur.execute(
                INSERT_EVENT,
                (event_id, "order.placed", tenant_id, order_id, str(uuid.uuid4()), event_id, Jsonb(payload)),
            )
            stored_id, recorded_at = cur.fetchone()
            params: list[object] = []
            for handler in handlers:
                params += [
                    stored_id,
                    handler,
                    "order.placed",
                    tenant_id,
                    order_id,
                    GRACE_SECONDS,
                    uuid.uuid4(),
                    recorded_at,
                ]
            cur.execute(insert_deliveries, params)
        latencies.append(time.perf_counter() - t0)
    child_report(meter, start=start, end=time.time(), count=len(latencies), latencies=latencies)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="job", required=True)
    p = sub.add_parser("publish")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--account-base", type=int, required=True)
    p.add_argument("--fast-path", action="store_true")
    p.add_argument(
        "--record",
        choices=["platform", "plain"],
        help="Record with the platform's statement (platform), or the same without its stream row (plain).",
    )
    p.add_argument("--statement", help="A JSON file with the statement of --record (bench/publish_bench.py writes it).")
    p = sub.add_parser("fanout")
    p.add_argument("--batch", type=int, default=100)
    p = sub.add_parser("order")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--max-count", type=int, required=True)
    p.add_argument("--spec", required=True)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("fastpath")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--account-base", type=int, required=True)
    args = parser.parse_args()
    {"publish": job_publish, "fanout": job_fanout, "fastpath": job_fastpath, "order": job_order}[args.job](args)


if __name__ == "__main__":
    main()
