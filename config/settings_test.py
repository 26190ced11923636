"""Settings for the test suite: real PostgreSQL and Redis (docs/settings.md), short timings."""

import os

from testsupport.workers import worker_services

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/shelfwise")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
# Under pytest-xdist each worker has a Redis database of its own (the URL's number plus the worker's
# index); the processes a test starts inherit it.
os.environ.update(worker_services(os.environ))
# DEBUG stays off, as in production; so the keys are set, test-only values.
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production-0123456789abcdefghij")
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "test-only-field-key-not-for-production-0123456789")
os.environ.setdefault("HANDLER_RETRY_SCHEDULE", "1,1,1")
os.environ.setdefault("OUTBOX_DISPATCH_GRACE", "2")
os.environ.setdefault("OUTBOX_LEASE", "3")
os.environ.setdefault("OUTBOX_CELERY_LEASE", "6")
os.environ.setdefault("OUTBOX_CELERY_SEND_CHECK", "1")
os.environ.setdefault("OUTBOX_CELERY_RUN_LEASE", "5")
os.environ.setdefault("OUTBOX_RELAY_POLL_INTERVAL", "0.2")

from config.settings import *  # noqa: F403
from config.settings import DOMAIN_EVENTS, INSTALLED_APPS

# The test process itself runs its in-process handlers right after each commit, so that a test of a
# service sees their effects without a relay; the relays, workers and web servers that tests start
# run as served, with the relays running those handlers (testsupport/processes.py). An explicit
# OUTBOX_RUN_ON_COMMIT in the environment wins for both.
if "OUTBOX_RUN_ON_COMMIT" not in os.environ:
    DOMAIN_EVENTS = {**DOMAIN_EVENTS, "RUN_ON_COMMIT": True}

# Probe handlers and events that the backbone tests drive; also loaded by the relays and workers
# that those tests start as subprocesses.
INSTALLED_APPS = [*INSTALLED_APPS, "domain_events.tests.probe"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# PostgreSQL with a quicker flush between transactional tests (testsupport/postgresql/base.py).
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":  # noqa: F405
    DATABASES["default"]["ENGINE"] = "testsupport.postgresql"  # noqa: F405

# Tests only: seconds the inbound consumer waits between commit and acknowledgement (a window in
# which a test kills it).
INBOUND_PAUSE_AFTER_COMMIT = float(os.environ.get("INBOUND_TEST_PAUSE_AFTER_COMMIT", "0"))
