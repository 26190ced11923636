"""A publisher for the plain-Celery reference: five tasks per event, straight to the broker.

DJANGO_SETTINGS_MODULE=bench.settings python -m bench.plain_celery --count N --account-base A
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
    args = parser.parse_args()

    django.setup()
    from bench.fanout.names import CELERY_HANDLERS
    from bench.fanout.tasks import plain_count
    from bench.procs import child_ready, child_report
    from domain_events.subscriptions import subscriptions

    # The queue the platform's celery-mode bench handlers use, so the same worker serves both.
    queues = {name: subscriptions.get(name).celery_queue for name in CELERY_HANDLERS}
    child_ready()
    start = time.time()
    with plain_count.app.producer_or_acquire() as producer:
        for i in range(args.count):
            event_id = str(uuid.uuid4())
            for name in CELERY_HANDLERS:
                plain_count.apply_async(
                    args=(name, args.account_base + i, event_id), producer=producer, queue=queues[name]
                )
    child_report(start=start, end=time.time(), count=args.count)


if __name__ == "__main__":
    main()
