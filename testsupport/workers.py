"""Names per pytest-xdist worker: what tests running side by side must not share.

`make test` runs the suite in parallel pytest-xdist workers. Each worker is a pytest process of its
own, with `PYTEST_XDIST_WORKER` set to `gw0`, `gw1`, …; in a run without xdist the variable is unset
and every name here is the plain one. What each worker gets (docs/testing.md, Parallel workers):

- its own test database: pytest-django appends the worker id (`test_shelfwise_gw1`), and the
  processes a test starts are given that database (`processes.subprocess_env`);
- its own Redis database for the Celery broker: `CELERY_BROKER_URL`'s number plus the worker's
  index (`worker_services`, set by `config/settings_test.py`);
- any other server-wide name a test creates (a replication slot, a RabbitMQ queue, a lock, a file
  outside `tmp_path`) through `per_worker(name)`; ports from `free_port()`.

No runtime module imports this (an import-linter contract); `config/settings_test.py` may.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

WORKER_VARIABLE = "PYTEST_XDIST_WORKER"
# Set in a worker once its services are claimed; the processes it starts inherit it, and with it the
# URLs already moved to the worker's own, which they must not move again.
CLAIMED_VARIABLE = "SHELFWISE_TEST_WORKER_SERVICES"
REDIS_DATABASES = 16  # Redis' default `databases`


def worker_id() -> str:
    """`gw0`, `gw1`, … in a pytest-xdist worker (or a process it started); "" without xdist."""
    return os.environ.get(WORKER_VARIABLE, "")


def worker_index() -> int:
    """0 for `gw0` and in a run without xdist, 1 for `gw1`, …"""
    worker = worker_id()
    return int(worker.removeprefix("gw")) if worker else 0


def per_worker(name: str, separator: str = "_") -> str:
    """`name` with the worker id appended (`shelfwise_standby_gw1`); `name` itself without xdist."""
    worker = worker_id()
    return f"{name}{separator}{worker}" if worker else name


def redis_url_for_worker(url: str, index: int | None = None) -> str:
    """A `redis://` URL moved to the worker's own database: its number plus the worker's index
    (`redis://…/8` is database 8 for `gw0`, 9 for `gw1`). Any other URL is returned unchanged."""
    index = worker_index() if index is None else index
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or index == 0:
        return url
    database = int(parts.path.strip("/") or 0) + index
    if database >= REDIS_DATABASES:
        raise ValueError(
            f"{url} plus worker {index} is Redis database {database}; Redis has {REDIS_DATABASES}: "
            "give CELERY_BROKER_URL a lower database number or run fewer workers"
        )
    return urlunsplit(parts._replace(path=f"/{database}"))


def worker_services(environ: Mapping[str, str]) -> dict[str, str]:
    """In a pytest-xdist worker, the variables that point it at services of its own, to be set once
    (`config/settings_test.py` does): `CELERY_BROKER_URL` moved to the worker's Redis database. A
    process that the worker starts inherits them (or is given other URLs on purpose) and keeps them.
    Without xdist, or once set: nothing."""
    worker = environ.get(WORKER_VARIABLE, "")
    if not worker or environ.get(CLAIMED_VARIABLE) == worker:
        return {}
    index = int(worker.removeprefix("gw"))
    moved = {CLAIMED_VARIABLE: worker}
    if "CELERY_BROKER_URL" in environ:
        moved["CELERY_BROKER_URL"] = redis_url_for_worker(environ["CELERY_BROKER_URL"], index)
    return moved
