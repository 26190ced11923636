"""Settings for the benchmarks: the project's settings on PostgreSQL and Redis, plus the bench-only app.

The bench owns its database (`BENCH_DATABASE_URL`, default `sw_bench`) and truncates tables in it
between runs, so it never reads `DATABASE_URL`: pointing a benchmark at another database by
accident would wipe it.
"""

import os

os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/sw_bench")
os.environ["CELERY_BROKER_URL"] = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/5")
# Production-like: no debug cursor recording every query, no browsable API renderer.
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-production-0123456789abcdef")
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "bench-only-field-key-not-for-production-0123456789abcdef")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("PAYMENT_GATEWAY_DELAY", "0")
# The bench's webhook endpoints are receivers on loopback.
os.environ.setdefault("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true")

from config.settings import *  # noqa: F403
from config.settings import DATABASES, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench.fanout", "bench.plainsaga"]
# Where the plain saga (bench/plainsaga/tasks.py) sends its webhooks; none when empty.
BENCH_PLAIN_WEBHOOK_URL = os.environ.get("BENCH_PLAIN_WEBHOOK_URL", "")
ROOT_URLCONF = "bench.urls"

# Measure what psycopg's server-side binding (prepared statements) would change: BENCH_SERVER_SIDE_BINDING=1.
if os.environ.get("BENCH_SERVER_SIDE_BINDING", "") in ("1", "true", "yes"):
    DATABASES["default"]["OPTIONS"] = {**DATABASES["default"].get("OPTIONS", {}), "server_side_binding": True}
