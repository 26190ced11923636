"""ShelfWise settings: every value comes from the environment (docs/settings.md) with a dev-safe default."""

import ipaddress
from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from config.logs import logging_config
from core.checks import DEVELOPMENT_SECRET_KEY

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# Off unless asked for: `make run` (and only it) sets DEBUG=true for development.
DEBUG = env.bool("DEBUG", default=False)
# The development key is public (it is in the repository): only ever used with DEBUG on.
SECRET_KEY = env.str("SECRET_KEY", default=DEVELOPMENT_SECRET_KEY if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("DEBUG=false requires SECRET_KEY to be set (`make run` sets DEBUG=true).")
if SECRET_KEY == DEVELOPMENT_SECRET_KEY and not DEBUG:
    raise ImproperlyConfigured("DEBUG=false refuses the public development SECRET_KEY: set one of your own.")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])

INSTALLED_APPS = [
    "staff_admin.apps.StaffAdminConfig",  # django.contrib.admin, opening on the staff dashboard
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "core",
    "domain_events",
    "tenants",
    "staff_admin",
    "inventory",
    "orders",
    "payments",
    "notifications",
    "webhooks",
    "analytics",
    "audit",
    "integrations",
    "inbound",
    "demo",
]

MIDDLEWARE = [
    "domain_events.middleware.CorrelationIdMiddleware",
    "config.metrics.RequestMetricsMiddleware",
    "core.middleware.RefuseOversizedRequestsMiddleware",
    "core.middleware.RefuseNulCharactersMiddleware",
    "core.middleware.ApiNotFoundMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # With a read replica: a client that just wrote reads from the primary for a moment.
    "core.replica.ReadYourWritesMiddleware",
]

# --- HTTPS (production: docs/operations.md, Production checklist; off by default for plain-HTTP development) ----
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Probes and scrapes come over plain HTTP from inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# Behind a proxy that terminates TLS: the header it sets, e.g. HTTP_X_FORWARDED_PROTO (value "https").
if env.str("SECURE_PROXY_SSL_HEADER", default=""):
    SECURE_PROXY_SSL_HEADER = (env.str("SECURE_PROXY_SSL_HEADER"), "https")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- Content-Security-Policy (django-csp) on every response: the admin, the API, Swagger UI ------
# No inline script anywhere, no inline <style> without the response's nonce, no style attribute
# (the admin's look is in staff_admin/static/shelfwise/admin.css). Swagger UI's icons are data: URLs.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# --- Request size (docs/api.md, Errors and hostile input) ---------------------------------------
# The request line, each header field and the number of header fields, at gunicorn's own limits:
# gunicorn refuses past them before Django runs; under any other server Django refuses them as JSON 400s.
REQUEST_MAX_LINE = env.int("REQUEST_MAX_LINE", default=4094)
REQUEST_MAX_HEADER_BYTES = env.int("REQUEST_MAX_HEADER_BYTES", default=8190)
REQUEST_MAX_HEADERS = env.int("REQUEST_MAX_HEADERS", default=100)
# A body past DATA_UPLOAD_MAX_MEMORY_SIZE (Django's 2.5 MB) is a 400, JSON bodies included; a form,
# a query string or a JSON object with more fields than DATA_UPLOAD_MAX_NUMBER_FIELDS (1,000) too.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2_621_440)
DATA_UPLOAD_MAX_NUMBER_FIELDS = env.int("DATA_UPLOAD_MAX_NUMBER_FIELDS", default=1000)

# Under this prefix a path no route takes is a JSON 404 (core.middleware.ApiNotFoundMiddleware).
API_PATH_PREFIX = "/api/"

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Before the apps' own: the admin's base_site.html adds the staff admin's stylesheet.
        "DIRS": [BASE_DIR / "config" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The zero-setup default of `make run`: web, worker and relay share one file, so WAL lets
    # readers run beside the writer, a busy timeout waits instead of failing, and IMMEDIATE
    # transactions take the write lock up front instead of deadlocking on upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    # No transaction stays open without bound: a statement, or a transaction left idle, that runs
    # past these limits is cancelled (long maintenance commands raise them for their session).
    # JIT is off: over the monthly partitions the planner's estimate for a claim passes
    # `jit_above_cost` (it counts every partition a join may reach), and compiling took a second
    # where the statement itself runs in a millisecond or two.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"]["options"] = (
        f"-c statement_timeout={env.int('DATABASE_STATEMENT_TIMEOUT_MS', default=30_000)}"
        f" -c idle_in_transaction_session_timeout={env.int('DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS', default=60_000)}"
        " -c jit=off"
    )
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=300)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

# A streaming replica of the primary for the read side (docs/operations.md, Read replica): the
# dashboard, the events feed, an order's timeline, the admin's lists and home page and the projection
# replays read there; everything else stays on the primary. Unset, there is only the primary.
_replica_url = env.str("DATABASE_REPLICA_URL", default="")
if _replica_url:
    DATABASES["replica"] = {
        **environ.Env.db_url_config(_replica_url),
        "OPTIONS": {
            **DATABASES["default"].get("OPTIONS", {}),
            # A replica that does not answer costs a page at most this long before it falls back.
            "connect_timeout": 2,
        },
        "CONN_MAX_AGE": DATABASES["default"].get("CONN_MAX_AGE", 0),
        "CONN_HEALTH_CHECKS": True,
        # Under tests the replica is the test database itself.
        "TEST": {"MIRROR": "default"},
    }
DATABASE_ROUTERS = ["core.replica.ReplicaRouter"]
# Reads go back to the primary while the replica is more than this many seconds behind it.
DATABASE_REPLICA_MAX_LAG = env.float("DATABASE_REPLICA_MAX_LAG", default=5)
# Seconds each process trusts its last look at the replica's health and lag.
DATABASE_REPLICA_CHECK_INTERVAL = env.float("DATABASE_REPLICA_CHECK_INTERVAL", default=1)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "tenants.User"
AUTHENTICATION_BACKENDS = ["tenants.auth.TenantStaffBackend"]

# The cache holds the token throttles' counts. Several web processes share it through Redis
# (`CACHE_URL=redis://127.0.0.1:6379/3`); the default is each process's own memory.
_cache_url = env.str("CACHE_URL", default="")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _cache_url}
        if _cache_url.startswith(("redis://", "rediss://"))
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# Checked wherever a person sets a password (admin forms, `create_user --password`); the demo
# logins of `seed_demo` (staff/staff, alice/alice, part of the contract) are demo data set as such.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    # Not a rule: a changed password revokes the user's API tokens (tenants/passwords.py).
    {"NAME": "tenants.passwords.RevokeApiTokensOnPasswordChange"},
]
# API tokens expire this many days after they are issued.
API_TOKEN_TTL_DAYS = env.int("API_TOKEN_TTL_DAYS", default=90)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- REST API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.auth.TenantTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["tenants.permissions.IsTenantMember"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.StrictJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "core.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "core.exception_handler.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "core.schema.ShelfWiseAutoSchema",
    "UNAUTHENTICATED_USER": None,
    # Only `POST auth/token` is throttled (tenants/throttling.py): password guessing.
    "DEFAULT_THROTTLE_RATES": {
        "auth_token_username": env.str("AUTH_TOKEN_RATE_PER_USERNAME", default="10/min"),
        "auth_token_address": env.str("AUTH_TOKEN_RATE_PER_ADDRESS", default="30/min"),
    },
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
}
# On SQLite, seconds after which an `Idempotency-Key` still in progress is taken to belong to a
# request that died with its process, so that a retry with the key may take it over. On PostgreSQL
# the request's own session marks it in flight, and a dead one frees it at once (core/idempotency.py).
IDEMPOTENCY_STALE_AFTER = env.float("IDEMPOTENCY_STALE_AFTER", default=60)
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

SPECTACULAR_SETTINGS = {
    "TITLE": "ShelfWise API",
    "DESCRIPTION": "Orders, catalog and stock for book retailers. Authenticate with `Authorization: Token <key>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Celery -----------------------------------------------------------------------------------
# With no broker configured, a filesystem transport keeps `make run` free of any server.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://localhost//")
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded broker of `make run`: message files in a folder (one per checkout by default).
    _broker_dir = Path(env.str("CELERY_FILESYSTEM_BROKER_DIR", default=str(BASE_DIR / ".broker")))
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # kombu keeps its exchange files in `control_folder`, by default `control/` in the current folder.
        "control_folder": str(_broker_dir / "control"),
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
        # An idle worker looks for a message every 0.1 s (kombu's default: every second).
        "polling_interval": 0.1,
    }
    # The same transport, waiting at most a quarter of a second per call: Ctrl-C stops a worker at once.
    CELERY_BROKER_TRANSPORT = "config.broker:Transport"
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # TCP keepalive on the broker's connections: one left half-open by a Redis restart or a network
    # cut is found dead and replaced, rather than waited on.
    # The visibility timeout (kombu's default, written out): a message a worker took and never
    # acknowledged (the worker was SIGKILLed) goes back to its queue after this. It must outlast
    # the longest countdown a worker holds (`WEBHOOK_COUNTDOWN_LIMIT`), or every such retry comes
    # back as a copy; recovery does not wait for it: the relays and the webhook sweep prove such a
    # message lost (`domain_events.probes`) and send it again within seconds.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_keepalive": True, "visibility_timeout": 3600}
# Through a broker outage a worker tries to reconnect for as long as it lasts; by default Celery
# gives up after 100 attempts and the worker exits. (A worker may still exit on a Redis outage:
# kombu's Redis transport fails with "'NoneType' object has no attribute 'hostname'" when it
# restores unacknowledged messages through a connection already closed, celery/kombu#970 and
# #582. The supervisor restarts it: deploy/systemd/, docs/operations.md.)
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fix-up closes the database connection around every task unless this is set:
# a new PostgreSQL backend per task. Workers keep theirs as web workers do (CONN_MAX_AGE, health
# checks: config/celery.py closes what is broken or too old around each task).
CELERY_DB_REUSE_MAX = 1000
# Webhook POSTs wait on other people's servers: their own queue, so they never hold up handlers.
CELERY_TASK_ROUTES = {"webhooks.*": {"queue": "webhooks"}}

# --- Domain events ----------------------------------------------------------------------------
HANDLER_RETRY_SCHEDULE = [
    int(s) for s in env.list("HANDLER_RETRY_SCHEDULE", default=["1", "5", "30", "120", "600", "1800"])
]
WEBHOOK_RETRY_SCHEDULE = [
    int(s) for s in env.list("WEBHOOK_RETRY_SCHEDULE", default=["5", "300", "1800", "7200", "18000", "36000", "36000"])
]
WEBHOOK_ALLOW_PRIVATE_NETWORKS = env.bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", default=False)
WEBHOOK_RETRY_JITTER = env.float("WEBHOOK_RETRY_JITTER", default=0.2)
# An endpoint whose every delivery has failed for this long is disabled and its staff e-mailed.
WEBHOOK_DISABLE_AFTER_DAYS = env.float("WEBHOOK_DISABLE_AFTER_DAYS", default=5)
# Requests in flight to one endpoint at a time: a slow receiver keeps at most this many workers busy.
WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT = env.int("WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT", default=1)
# Retries due within this many seconds go to the broker with a countdown; later ones to the sweep.
WEBHOOK_COUNTDOWN_LIMIT = env.int("WEBHOOK_COUNTDOWN_LIMIT", default=300)
# The sweep (`send_due_webhooks`): how often, how late a due delivery must be. It sends a message
# again once a probe proves it lost (as the relays do); past RESEND_AFTER whatever the proof, a
# fallback only: below the queue's latency it would flood the queue with copies.
WEBHOOK_SWEEP_INTERVAL = env.float("WEBHOOK_SWEEP_INTERVAL", default=5)
WEBHOOK_SWEEP_GRACE = env.float("WEBHOOK_SWEEP_GRACE", default=10)
WEBHOOK_SWEEP_RESEND_AFTER = env.float("WEBHOOK_SWEEP_RESEND_AFTER", default=600)
DOMAIN_EVENTS = {
    # How long the process that published an event has to dispatch it before a relay takes over.
    # Dispatch right after commit in the publishing process (the fast path); off, relays do it all.
    "DISPATCH_ON_COMMIT": env.bool("OUTBOX_DISPATCH_ON_COMMIT", default=True),
    # With dispatch on commit, whether the publishing process also runs the in-process handlers
    # itself. Off (the default, in every process), it sends the Celery messages and wakes the
    # relays, which run the in-process handlers in batches: the request keeps its throughput. On, a
    # worker that captured a payment confirms the order at once: a shorter saga when the machine runs
    # near its capacity, for more CPU per order (bench/README.md, In-process running).
    "RUN_ON_COMMIT": env.bool("OUTBOX_RUN_ON_COMMIT", default=False),
    "DISPATCH_GRACE": timedelta(seconds=env.float("OUTBOX_DISPATCH_GRACE", default=10)),
    # `POST orders/` answers 503 with Retry-After while the oldest delivery never yet attempted is
    # older than this (0: never): the handlers' backlog stays bounded instead of growing with load.
    "ADMISSION_MAX_BACKLOG": timedelta(seconds=env.float("OUTBOX_ADMISSION_MAX_BACKLOG", default=0)),
    # How long a relay's claim on a delivery lasts; a claim whose holder died expires after it. It
    # covers a claim's send to the broker (milliseconds; 2 s of connection timeout when the broker
    # is down), so a killed relay's claims and a batch a broker outage kept from going are sent
    # again within it (60 s held them past the minute of recovery).
    "LEASE": timedelta(seconds=env.float("OUTBOX_LEASE", default=20)),
    # A Celery message still unstarted after this is checked for loss, and sent again if lost.
    "CELERY_SEND_CHECK": timedelta(seconds=env.float("OUTBOX_CELERY_SEND_CHECK", default=15)),
    # The hard time limit of a Celery delivery task (the soft one is 80 % of it).
    "CELERY_TIME_LIMIT": timedelta(seconds=env.float("OUTBOX_CELERY_TIME_LIMIT", default=30)),
    # How long a handler may run in a relay's or a worker's batch before it fails like any error (its
    # savepoint rolled back, retried on its schedule); the others of the batch are not held back.
    "HANDLER_TIME_LIMIT": timedelta(seconds=env.float("OUTBOX_HANDLER_TIME_LIMIT", default=30)),
    # How long a started Celery delivery is its worker's before a relay sends it again.
    "CELERY_RUN_LEASE": timedelta(seconds=env.float("OUTBOX_CELERY_RUN_LEASE", default=40)),
    # The most deliveries of one handler a Celery task carries and runs: one when the queue is idle,
    # more under backlog, each with its own transaction or savepoint, outcome and retry schedule.
    "CELERY_BATCH": env.int("OUTBOX_CELERY_BATCH", default=50),
    # Past this a relay sends an unstarted Celery message again, whether or not it was proved lost.
    "CELERY_LEASE": timedelta(seconds=env.float("OUTBOX_CELERY_LEASE", default=300)),
    "RELAY_BATCH_SIZE": env.int("OUTBOX_RELAY_BATCH_SIZE", default=100),
    "RELAY_POLL_INTERVAL": env.float("OUTBOX_RELAY_POLL_INTERVAL", default=1.0),
    # After a NOTIFY, how long a relay lets more events gather before it claims a batch.
    "RELAY_GATHER": env.float("OUTBOX_RELAY_GATHER", default=0.02),
    # How often an idle relay looks for new positions for the position readers (projections, audit).
    "READER_POLL_INTERVAL": env.float("OUTBOX_READER_POLL_INTERVAL", default=0.02),
    # Readers held back this long by an open writing transaction log which one holds them.
    "READER_HELD_WARNING": timedelta(seconds=env.float("OUTBOX_READER_HELD_WARNING", default=30)),
    # Succeeded delivery records are pruned after this; stored events are kept until archived.
    "DELIVERY_RETENTION": timedelta(hours=env.float("OUTBOX_DELIVERY_RETENTION_HOURS", default=168)),
    # Dead letters hold their aggregate back until redriven or skipped; after this they are pruned.
    "DEAD_LETTER_RETENTION": timedelta(days=env.float("OUTBOX_DEAD_LETTER_RETENTION_DAYS", default=30)),
    # Open deliveries of a handler that no process has run for this long are pruned.
    "ORPHAN_RETENTION": timedelta(days=env.float("OUTBOX_ORPHAN_RETENTION_DAYS", default=30)),
    "RETRY_JITTER": env.float("HANDLER_RETRY_JITTER", default=0.2),
}

# --- Integration broker (docs/architecture.md, Integration broker) ---------------------------
# Set, every contract event is also published to this AMQP broker's `shelfwise.events` exchange.
INTEGRATION_BROKER_URL = env.str("INTEGRATION_BROKER_URL", default="")
# The queue that remembers the last message published, so that a lost confirmation or a relay
# killed after publishing never makes a repeat (integrations/transport.py). One per deployment
# sharing a broker's virtual host.
INTEGRATION_BROKER_LEDGER = env.str("INTEGRATION_BROKER_LEDGER", default="shelfwise.events.ledger")
# Seconds to connect and for each publisher confirm; a broker slower than this counts as down.
INTEGRATION_BROKER_TIMEOUT = env.float("INTEGRATION_BROKER_TIMEOUT", default=5)
INTEGRATION_BROKER_BATCH_SIZE = env.int("INTEGRATION_BROKER_BATCH_SIZE", default=200)
# Seconds between tries while the broker is down (the last step repeats): an outage only delays.
INTEGRATION_BROKER_RETRY_SCHEDULE = [
    int(s) for s in env.list("INTEGRATION_BROKER_RETRY_SCHEDULE", default=["1", "2", "5", "10", "30"])
]

# --- Inbound: the distributor's shipment notices (docs/api.md) ------------------------------------
# `manage.py consume_inbound` reads this durable queue on the broker of INTEGRATION_BROKER_URL.
INBOUND_BROKER_QUEUE = env.str("INBOUND_BROKER_QUEUE", default="shelfwise.inbound.distributor")
# Messages a consumer holds unacknowledged at a time.
INBOUND_BROKER_PREFETCH = env.int("INBOUND_BROKER_PREFETCH", default=10)
# A message that fails this many times goes to the dead-letter exchange `<queue>.dead-letter`.
INBOUND_BROKER_MAX_FAILURES = env.int("INBOUND_BROKER_MAX_FAILURES", default=5)

# --- E-mail -----------------------------------------------------------------------------------
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="ShelfWise <orders@shelfwise.localhost>")
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)

# --- Secrets at rest (core/fields.py) ----------------------------------------------------------
# Keys for encrypted fields (webhook and inbound secrets, payment tokens), each any string of at
# least 32 characters: the first encrypts, all decrypt, so a new key goes first and the old ones
# stay until `manage.py rotate_field_encryption` has written every value again. Values from before
# this setting are read with a key derived from SECRET_KEY until that command has run. Required in
# production, so that rotating SECRET_KEY never makes the stored secrets unreadable.
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])
if not DEBUG and not FIELD_ENCRYPTION_KEYS:
    raise ImproperlyConfigured("DEBUG=false requires FIELD_ENCRYPTION_KEYS to be set.")
if any(len(key) < 32 for key in FIELD_ENCRYPTION_KEYS):
    raise ImproperlyConfigured("Each key of FIELD_ENCRYPTION_KEYS must be at least 32 characters long.")

# --- Payments ---------------------------------------------------------------------------------
PAYMENT_GATEWAY = env.str("PAYMENT_GATEWAY", default="payments.gateways.SimulatedGateway")
PAYMENT_GATEWAY_DELAY = env.float("PAYMENT_GATEWAY_DELAY", default=0.0)
# The simulated gateway performs the first N calls per idempotency key but loses their responses.
PAYMENT_GATEWAY_LOST_RESPONSES = env.int("PAYMENT_GATEWAY_LOST_RESPONSES", default=0)

# --- Metrics (/metrics) ------------------------------------------------------------------------
# A folder shared by every process of a machine (prometheus-client's multiprocess mode), emptied
# when they all start afresh; unset, /metrics shows the serving process's own counters.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
# Set, /metrics answers only `Authorization: Bearer <METRICS_TOKEN>` (401 otherwise); unset, it is open.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Comma-separated addresses or networks (CIDR) that may scrape; others get 403. Unset: any address.
METRICS_ALLOWED_NETWORKS = [
    ipaddress.ip_network(n.strip(), strict=False) for n in env.list("METRICS_ALLOWED_NETWORKS", default=[])
]
# The database gauges (backlog, dead letters, readers' lag) are read at most this often.
METRICS_CACHE_SECONDS = env.float("METRICS_CACHE_SECONDS", default=5)

# --- Logging ----------------------------------------------------------------------------------
# LOG_FORMAT=json: one JSON object per line; console (default): human-readable (`config/logs.py`).
LOG_FORMAT = env.str("LOG_FORMAT", default="console")
LOGGING = logging_config(LOG_FORMAT, env.str("LOG_LEVEL", default="INFO"))
