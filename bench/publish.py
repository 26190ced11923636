"""A Django process that publishes bench events through the platform, one transaction each.

    DJANGO_SETTINGS_MODULE=bench.settings python -m bench.publish --count N --account-base A [--celery]

Whether the five handlers then run in this process (fast path) or in the relays depends on
OUTBOX_DISPATCH_ON_COMMIT, as in production.
"""

from __future__ import annotations

import argparse
import time
import uuid

import django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--account-base", type=int, required=True)
    parser.add_argument("--celery", action="store_true", help="Publish the event type with celery-mode handlers.")
    args = parser.parse_args()

    django.setup()
    from django.db import connection

    from bench.fanout.services import fanout_event_record
    from bench.procs import CpuMeter, child_ready, child_report

    connection.ensure_connection()
    meter = CpuMeter(connection.connection.info.backend_pid)
    tenant_id = uuid.uuid4()
    child_ready(meter)
    start = time.time()
    for i in range(args.count):
        fanout_event_record(tenant_id=tenant_id, account=args.account_base + i, celery=args.celery)
    child_report(meter, start=start, end=time.time(), count=args.count)


if __name__ == "__main__":
    main()
