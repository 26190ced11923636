"""The fastest queue peer measured here, pgqueuer 1.6 on asyncpg, doing the bench's fan-out:
five jobs per event, each job one transaction (idempotent inbox insert + the counter update).

    python -m bench.peers.pgqueuer_peer install
    python -m bench.peers.pgqueuer_peer publish --count N --account-base A
    python -m bench.peers.pgqueuer_peer worker --expect JOBS

Bench-only (bench/requirements.txt). Each job waits at the start line and reports like the
platform's bench processes do.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from datetime import timedelta

import asyncpg
from pgqueuer import AsyncpgDriver, Queries, QueueManager
from pgqueuer.domain.types import QueueExecutionMode

from bench.fanout.names import HANDLERS_PER_EVENT
from bench.procs import CpuMeter, child_ready, child_report

HANDLERS = tuple(f"peer.pgqueuer_count_{i}" for i in range(1, HANDLERS_PER_EVENT + 1))
INBOX = """
CREATE TABLE IF NOT EXISTS peer_inbox (handler text NOT NULL, event_id uuid NOT NULL, PRIMARY KEY (handler, event_id))
"""
APPLY = """
WITH fresh AS (
    INSERT INTO peer_inbox (handler, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1
)
UPDATE fanout_counter SET value = value + 1 WHERE handler = $1 AND account = $3 AND EXISTS (SELECT 1 FROM fresh)
"""


def dsn() -> str:
    return os.environ["BENCH_DATABASE_URL"]


async def install() -> None:
    conn = await asyncpg.connect(dsn())
    try:
        queries = Queries(AsyncpgDriver(conn))
        if not await queries.schema_is_installed():
            await queries.install()
        await conn.execute(INBOX)
        await conn.execute("TRUNCATE peer_inbox")
        await conn.execute("DELETE FROM pgqueuer")
    finally:
        await conn.close()


async def publish(count: int, account_base: int) -> None:
    conn = await asyncpg.connect(dsn())
    meter = CpuMeter(conn.get_server_pid())
    queries = Queries(AsyncpgDriver(conn))
    child_ready(meter)
    start = time.time()
    for i in range(count):
        payload = f"{account_base + i}:{uuid.uuid4()}".encode()
        await queries.enqueue(list(HANDLERS), [payload] * len(HANDLERS), [0] * len(HANDLERS))
    child_report(meter, start=start, end=time.time(), count=count)
    await conn.close()


async def worker(expect: int) -> None:
    conn = await asyncpg.connect(dsn())
    pool = await asyncpg.create_pool(dsn(), min_size=2, max_size=2)
    meter = CpuMeter(conn.get_server_pid())
    qm = QueueManager(Queries(AsyncpgDriver(conn)))

    def entrypoint(name: str) -> None:
        @qm.entrypoint(name)
        async def apply(job) -> None:
            account, event_id = job.payload.decode().split(":")
            async with pool.acquire() as db, db.transaction():
                await db.execute(APPLY, name, uuid.UUID(event_id), int(account))

    for name in HANDLERS:
        entrypoint(name)

    async def stop_when_done() -> None:
        async with pool.acquire() as db:
            while await db.fetchval("SELECT count(*) FROM peer_inbox") < expect:
                await asyncio.sleep(0.05)
        qm.shutdown.set()

    child_ready(meter)
    start = time.time()
    watcher = asyncio.create_task(stop_when_done())
    await qm.run(batch_size=10, mode=QueueExecutionMode.continuous, dequeue_timeout=timedelta(seconds=1))
    await watcher
    child_report(meter, start=start, end=time.time(), count=0)
    await pool.close()
    await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="job", required=True)
    sub.add_parser("install")
    p = sub.add_parser("publish")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--account-base", type=int, required=True)
    p = sub.add_parser("worker")
    p.add_argument("--expect", type=int, required=True)
    args = parser.parse_args()
    if args.job == "install":
        asyncio.run(install())
    elif args.job == "publish":
        asyncio.run(publish(args.count, args.account_base))
    else:
        asyncio.run(worker(args.expect))


if __name__ == "__main__":
    main()
