"""The settings page, generated from `config/settings.py`: every environment variable it reads
(`env.<kind>("NAME", default=…)`), with its default and its meaning from `MEANINGS`.

A variable read there without a meaning here fails `python -m docsgen` and the docs tests, so a
new setting cannot go undocumented.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from docsgen import DOCS, ROOT

SETTINGS = ROOT / "config" / "settings.py"
PAGE = DOCS / "settings.md"

# Where the default in the code is an expression, what it amounts to.
SHOWN_DEFAULTS = {
    "SECRET_KEY": "a development key while `DEBUG` is on; required when `DEBUG=false`",
    "DATABASE_URL": "`sqlite:///db.sqlite3` (in the checkout)",
    "CELERY_FILESYSTEM_BROKER_DIR": "`.broker/` in the checkout",
    "EMAIL_URL": "`consolemail://` (e-mails are printed by the process that sends them)",
}

MEANINGS = {
    # Django and HTTP
    "DEBUG": "Django's debug mode, off unless set (`make run` sets it on). Off, the development `SECRET_KEY` is "
    "refused and `FIELD_ENCRYPTION_KEYS` is required.",
    "SECRET_KEY": "Django's secret key; the same on every machine. Its derived key still reads values stored "
    "encrypted before `FIELD_ENCRYPTION_KEYS` was set.",
    "ALLOWED_HOSTS": "Comma-separated host names the web side answers to.",
    "SECURE_SSL_REDIRECT": "Redirect plain HTTP to HTTPS (the probes `/healthz`, `/readyz` and `/metrics` are exempt).",
    "SESSION_COOKIE_SECURE": "Send the session cookie over HTTPS only.",
    "CSRF_COOKIE_SECURE": "Send the CSRF cookie over HTTPS only.",
    "SECURE_HSTS_SECONDS": "HSTS max-age in seconds (start low: browsers remember it).",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "HSTS for subdomains too.",
    "SECURE_HSTS_PRELOAD": "Ask browsers to preload HSTS.",
    "SECURE_PROXY_SSL_HEADER": "Behind a proxy that terminates TLS: the header it sets (`HTTP_X_FORWARDED_PROTO`, "
    "value `https`). Only when the proxy always sets it.",
    "CSRF_TRUSTED_ORIGINS": "Comma-separated origins the admin's forms may come from, behind such a proxy.",
    "REQUEST_MAX_LINE": "Longest request line accepted (gunicorn's own limit; Django refuses past it as a JSON 400).",
    "REQUEST_MAX_HEADER_BYTES": "Longest header field accepted (gunicorn's own limit).",
    "REQUEST_MAX_HEADERS": "Most header fields accepted (gunicorn's own limit).",
    "DATA_UPLOAD_MAX_MEMORY_SIZE": "Largest request body in bytes, JSON included; past it a 400 `too_large`.",
    "DATA_UPLOAD_MAX_NUMBER_FIELDS": "Most fields in a form, query string or JSON object; past it a 400 "
    "`too_many_fields`.",
    # Database and cache
    "DATABASE_URL": "The database (`postgres://…` in production). Tests use "
    "`postgres://postgres@127.0.0.1:5432/shelfwise`.",
    "DATABASE_STATEMENT_TIMEOUT_MS": "PostgreSQL: a statement running longer is cancelled "
    "(maintenance commands raise it for their session).",
    "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS": "PostgreSQL: a transaction left idle longer is ended.",
    "DATABASE_CONN_MAX_AGE": "PostgreSQL: seconds a connection is kept for reuse (with health checks).",
    "DATABASE_REPLICA_URL": "A streaming replica of the primary (`postgres://…`) that serves read-side reads: the "
    "dashboard, the events feed, an order's timeline, the admin's lists and home page, the projections' replays. "
    "Writes, and reads that must see them, stay on the primary; reads fall back to the primary while the replica "
    "lags or is down (docs/operations.md, Read replica). Unset, the primary serves everything.",
    "DATABASE_REPLICA_MAX_LAG": "Seconds the replica may be behind the primary; past it, reads go to the primary "
    "until it catches up.",
    "DATABASE_REPLICA_CHECK_INTERVAL": "Seconds each process trusts its last look at the replica's health and lag "
    "(one look, two small queries, per interval).",
    "CACHE_URL": "A shared cache (`redis://HOST:6379/3`) for the sign-in throttles' counts; unset, each "
    "process counts on its own.",
    # API
    "AUTH_TOKEN_RATE_PER_USERNAME": "How many `POST auth/token` attempts per username (`N/min`, `N/hour`).",
    "AUTH_TOKEN_RATE_PER_ADDRESS": "How many `POST auth/token` attempts per client address.",
    "NUM_PROXIES": "Trusted proxies in front of the web side, so that the throttles see the client's address.",
    "IDEMPOTENCY_STALE_AFTER": "On SQLite, seconds after which an `Idempotency-Key` still in flight is taken to "
    "belong to a request that died, so a retry with it may take it over. On PostgreSQL a key in flight is held "
    "by its request's database session and freed at once when that process dies.",
    # Celery
    "CELERY_BROKER_URL": "The Celery broker (`redis://…` in production); unset, a filesystem transport that "
    "needs no server. Tests use `redis://127.0.0.1:6379/0`.",
    "CELERY_FILESYSTEM_BROKER_DIR": "With the filesystem transport: the folder that holds its messages.",
    # Domain events
    "HANDLER_RETRY_SCHEDULE": "Comma-separated seconds between the attempts of a failing handler; then it is a "
    "dead letter.",
    "HANDLER_RETRY_JITTER": "Each handler retry delay is moved by up to this fraction either way.",
    "OUTBOX_DISPATCH_ON_COMMIT": "Run in-process handlers and send Celery messages right after the publisher "
    "commits (the fast path); `false` leaves all dispatching to the relays.",
    "OUTBOX_DISPATCH_GRACE": "Seconds the publishing process has to dispatch an event before a relay takes over.",
    "OUTBOX_LEASE": "Seconds a relay's claim on a delivery lasts; a dead relay's claims expire after it.",
    "OUTBOX_CELERY_SEND_CHECK": "Seconds after which a Celery message not yet started is checked for loss, "
    "and sent again if it was provably lost.",
    "OUTBOX_ADMISSION_MAX_BACKLOG": "Seconds: while the oldest handler delivery never yet attempted is older than "
    "this, `POST orders/` answers 503 with `Retry-After` instead of adding to the backlog (0, the default: never "
    "refused). Bounds how far behind the handlers get under more load than they carry.",
    "OUTBOX_RUN_ON_COMMIT": "With OUTBOX_DISPATCH_ON_COMMIT, whether the publishing process also runs the in-process "
    "handlers after its commit. Off (the default, in every process), it sends the Celery messages and wakes the "
    "relays, which run them in batches. On, a worker that captured a payment confirms the order at once: a shorter "
    "saga when the machine runs near its capacity, for more CPU per order (in the full `make bench` of "
    "2026-12-07, p50 1.2x shorter for 1.16x the CPU; `bench/README.md`, In-process running).",
    "OUTBOX_CELERY_TIME_LIMIT": "Hard time limit of a Celery delivery task, seconds (the soft one is 80 % of it).",
    "OUTBOX_HANDLER_TIME_LIMIT": "Seconds a handler may run in a relay's or a Celery worker's batch; past it, that "
    "delivery fails and retries on its schedule while the rest of the batch goes on.",
    "OUTBOX_CELERY_BATCH": "The most deliveries of one handler that one Celery task runs: a task sent when the "
    "queue is idle carries one; under backlog a worker also takes the same handler's deliveries still queued "
    "behind it, up to this many. Each keeps its own transaction or savepoint, outcome and retry schedule.",
    "OUTBOX_CELERY_RUN_LEASE": "Seconds a started Celery delivery belongs to its worker before a relay sends it again.",
    "OUTBOX_CELERY_LEASE": "Seconds after which a relay sends an unstarted Celery message again, proved lost or not.",
    "OUTBOX_RELAY_BATCH_SIZE": "Deliveries a relay claims at a time.",
    "OUTBOX_RELAY_POLL_INTERVAL": "Seconds between a relay's passes when no NOTIFY wakes it sooner.",
    "OUTBOX_RELAY_GATHER": "Seconds a relay woken by a NOTIFY lets more events gather before it claims a batch.",
    "OUTBOX_READER_POLL_INTERVAL": "Seconds between an idle relay's looks for new positions for the position readers "
    "(projections, the audit chain, the broker relay): one cheap query each.",
    "OUTBOX_READER_HELD_WARNING": "Seconds the position readers may be held back by an open writing transaction "
    "before a relay logs a warning naming its backend pid and application name.",
    "OUTBOX_DELIVERY_RETENTION_HOURS": "Succeeded and skipped delivery records are pruned after this many hours; "
    "on PostgreSQL a month at a time, once their events' month is over by this long (stored events are kept "
    "until `archive_events` archives their month).",
    "OUTBOX_DEAD_LETTER_RETENTION_DAYS": "Dead letters are pruned after this many days.",
    "OUTBOX_ORPHAN_RETENTION_DAYS": "Open deliveries of a handler no code subscribes any more are pruned after this "
    "many days.",
    # Webhooks
    "WEBHOOK_RETRY_SCHEDULE": "Comma-separated seconds between the attempts of a webhook delivery; then it is `dead`.",
    "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "Let webhooks reach loopback and private addresses (tests, local ERPs). "
    "Leave it off in production.",
    "WEBHOOK_RETRY_JITTER": "Each webhook retry delay is moved by up to this fraction either way.",
    "WEBHOOK_DISABLE_AFTER_DAYS": "An endpoint whose every attempt has failed this many days is disabled and its "
    "staff e-mailed.",
    "WEBHOOK_MAX_IN_FLIGHT_PER_ENDPOINT": "Requests in flight to one endpoint at a time.",
    "WEBHOOK_COUNTDOWN_LIMIT": "Retries due within this many seconds go to the broker with a countdown; later ones "
    "wait in the database for the sweep.",
    "WEBHOOK_SWEEP_INTERVAL": "Seconds between the passes of `send_due_webhooks`.",
    "WEBHOOK_SWEEP_GRACE": "Seconds a delivery must be overdue before the sweep hands it on.",
    "WEBHOOK_SWEEP_RESEND_AFTER": "Seconds after its last message before the sweep sends a due delivery again "
    "whatever the proof; sooner only once the message is proved lost (a later one on the `webhooks` queue started).",
    # Integration broker
    "INTEGRATION_BROKER_URL": "Also publish every event to this AMQP broker's `shelfwise.events` exchange; unset, off.",
    "INTEGRATION_BROKER_LEDGER": "The queue that remembers the last message published, so that nothing is "
    "published twice; one per deployment sharing a virtual host.",
    "INTEGRATION_BROKER_TIMEOUT": "Seconds to connect and for each publisher confirm; a slower broker counts as down.",
    "INTEGRATION_BROKER_BATCH_SIZE": "Events the broker's position reader publishes per batch.",
    "INBOUND_BROKER_QUEUE": "The durable queue `manage.py consume_inbound` reads the distributor's shipment "
    "notices from, on the broker of `INTEGRATION_BROKER_URL`.",
    "INBOUND_BROKER_PREFETCH": "Notices the inbound consumer holds unacknowledged at a time.",
    "INBOUND_BROKER_MAX_FAILURES": "A notice whose handling fails this many times goes to the dead-letter exchange "
    "`<queue>.dead-letter` (and its queue of that name); the database out of reach is not counted: the notice "
    "waits for it.",
    "INTEGRATION_BROKER_RETRY_SCHEDULE": "Comma-separated seconds between tries while the broker is down (the last "
    "step repeats).",
    # E-mail
    "EMAIL_URL": "Outgoing mail: `smtp://user:password@host:port`, `consolemail://`.",
    "DEFAULT_FROM_EMAIL": "The sender of customer and staff e-mails.",
    "EMAIL_TIMEOUT": "Seconds to wait for the mail server.",
    # Payments
    "PAYMENT_GATEWAY": "Dotted path of the payment gateway class.",
    "PAYMENT_GATEWAY_DELAY": "The simulated gateway: seconds of latency per call.",
    "PAYMENT_GATEWAY_LOST_RESPONSES": "The simulated gateway: the first N calls per idempotency key are performed "
    "but their answers lost (meaningful on PostgreSQL only).",
    # Metrics and logs
    "PROMETHEUS_MULTIPROC_DIR": "A folder shared by every process of a machine for their counters "
    "(prometheus-client's multiprocess mode), emptied when they all restart; unset, `/metrics` shows the "
    "serving process's own counters.",
    "API_TOKEN_TTL_DAYS": "Days an API token lives before it expires; `POST auth/token/rotate` issues a new one "
    "(docs: Security).",
    "FIELD_ENCRYPTION_KEYS": "Comma-separated keys (each at least 32 characters) for values stored encrypted (webhook "
    "secrets, payment tokens): the first encrypts, all decrypt; required with `DEBUG=false`. "
    "`manage.py rotate_field_encryption` rewrites every value under the first.",
    "METRICS_TOKEN": "Set, `/metrics` answers only `Authorization: Bearer <token>` (401 otherwise); unset, it is open.",
    "METRICS_ALLOWED_NETWORKS": "Comma-separated networks (CIDR) that may scrape `/metrics` (403 outside them); "
    "unset, any address.",
    "METRICS_CACHE_SECONDS": "The database gauges of `/metrics` are read at most this often.",
    "LOG_FORMAT": "`console` (readable lines) or `json` (one JSON object per line).",
    "LOG_LEVEL": "The lowest level logged.",
}


# Read by OpenTelemetry's SDK and `core.tracing`, not by config/settings.py: name → (default, meaning).
# The SDK reads more of its standard variables (`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_TRACES_SAMPLER`, …).
TRACING = {
    "OTEL_EXPORTER_OTLP_ENDPOINT": (
        "unset: tracing off",
        "Where every process sends its spans, over OTLP/HTTP (protobuf): `http://collector:4318` (the path "
        "`/v1/traces` is added). Set, or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` set, turns tracing on "
        "([Operations, Traces](operations.md#traces)); unset, no tracer is set up and nothing is stored or sent.",
    ),
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ("unset", "The full URL for spans, taken as is; wins over the above."),
    "OTEL_SERVICE_NAME": (
        "`shelfwise-<process>`",
        "The service name of the process's spans; unset, `shelfwise-web`, `shelfwise-worker` or "
        "`shelfwise-<command>` (`shelfwise-run_outbox_relay`).",
    ),
    "OTEL_RESOURCE_ATTRIBUTES": ("unset", "More resource attributes, `key=value,…` (`deployment.environment=prod`)."),
    "OTEL_SDK_DISABLED": ("`false`", "`true` turns tracing off whatever else is set."),
    "OTEL_TRACES_EXPORTER": ("`otlp`", "`none` turns tracing off whatever else is set."),
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": (
        "`psycopg`",
        "Comma-separated instrumentations left out, of `django`, `celery` and `psycopg`; the handlers' own spans "
        "stay. Unset, `psycopg`: a span per SQL statement costs more than the rest of tracing together "
        "([Performance](performance.md)); set it empty to trace every statement too.",
    ),
    "OTEL_BSP_SCHEDULE_DELAY": ("`5000`", "Milliseconds between two exports of a process's finished spans."),
}


@dataclass(frozen=True)
class Setting:
    name: str
    kind: str  # env's cast: str, bool, int, float, list, db, email_url
    default: str  # as written in the code, or as shown in SHOWN_DEFAULTS
    line: int


def read_settings(path: Path = SETTINGS) -> list[Setting]:
    """Every `env.<kind>("NAME", default=…)` and `env("NAME")` in `path`, first occurrence of each name."""
    found: dict[str, Setting] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "env":
            kind = func.attr
        elif isinstance(func, ast.Name) and func.id == "env":
            kind = "str"
        else:
            continue
        name = node.args[0]
        if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
            continue
        default = next((ast.unparse(k.value) for k in node.keywords if k.arg == "default"), "")
        setting = Setting(name.value, kind, default, node.lineno)
        if name.value not in found or (not found[name.value].default and default):
            found[name.value] = setting
    return sorted(found.values(), key=lambda s: s.line)


def _shown_default(setting: Setting) -> str:
    if setting.name in SHOWN_DEFAULTS:
        return SHOWN_DEFAULTS[setting.name]
    value = setting.default
    if value in ("", "''", '""', "[]"):
        return "unset"
    if value.startswith("["):  # a list of strings: shown as the comma-separated value it stands for
        return "`" + ",".join(ast.literal_eval(value)) + "`"
    if value in ("True", "False"):
        return f"`{value.lower()}`"
    return f"`{ast.literal_eval(value)}`" if value[0] in "'\"" else f"`{value.replace('_', ',')}`"


def undocumented(settings: list[Setting] | None = None) -> list[str]:
    return [s.name for s in settings or read_settings() if s.name not in MEANINGS]


def render() -> str:
    settings = read_settings()
    missing = undocumented(settings)
    if missing:
        raise LookupError(f"settings read in config/settings.py without a meaning in docsgen/settings.py: {missing}")
    rows = [
        "# Settings",
        "",
        "<!-- Generated by `python -m docsgen` from config/settings.py; do not edit by hand. -->",
        "",
        "Every environment variable ShelfWise reads (in `config/settings.py`, through django-environ), in the",
        "order it reads them. Every one is optional: the defaults run `make run` on a fresh clone. Lists are",
        "comma-separated; booleans are `true`/`false`. What to set in production: "
        "[Operations](operations.md#production-checklist).",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    rows += [f"| `{s.name}` | {_shown_default(s)} | {MEANINGS[s.name]} |" for s in settings]
    rows += [
        "",
        "## Traces (OpenTelemetry)",
        "",
        "Read by OpenTelemetry's SDK in every process (`core.tracing`), with their standard meanings.",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    rows += [f"| `{name}` | {default} | {meaning} |" for name, (default, meaning) in TRACING.items()]
    return "\n".join(rows) + "\n"


def write(page: Path = PAGE) -> bool:
    text = render()
    if page.exists() and page.read_text() == text:
        return False
    page.write_text(text)
    return True
