"""Logging for every process (web, worker, relay, commands): one formatter, two formats.

`LOG_FORMAT=console` (the default) writes human-readable lines; `LOG_FORMAT=json` one JSON object
per line. Both carry what the code bound to the log context where it applies (`correlation_id`,
`causation_id`, `event_id`, `tenant_id`, `handler`), and both pass every line through `redact`
last, so tokens, payment tokens, webhook secrets and passwords never reach a log.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any

import structlog

from core.log_context import add_log_context

LOG_FORMATS = ("console", "json")
REDACTED = "[redacted]"

# A key whose value is a credential, wherever it appears (a bound value, `key=value`, JSON, a repr).
_SENSITIVE_KEY = r"[\w-]*(?:password|passwd|secret|token|api[_-]?key|authorization|cookie|sessionid)"
_SENSITIVE_KEY_RE = re.compile(rf"(?i)^{_SENSITIVE_KEY}$")
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # "password": "x", 'payment_token': 'tok_visa', secret=whsec_…, Authorization: Token …
    (
        re.compile(
            rf"""(?i)(["']?\b{_SENSITIVE_KEY}["']?\s*[:=]\s*)(?:(?:Token|Bearer|Basic)\s+)?("[^"]*"|'[^']*'|[^\s,;&}}\])]+)"""
        ),
        rf"\g<1>{REDACTED}",
    ),
    (re.compile(r"(?i)\b(Token|Bearer|Basic)\s+[A-Za-z0-9._~+/-]{16,}=*"), rf"\g<1> {REDACTED}"),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"), f"whsec_{REDACTED}"),  # webhook signing secrets
    (re.compile(r"\btok_[A-Za-z0-9_]+"), f"tok_{REDACTED}"),  # payment tokens
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/\s@]+:)[^@\s/]+@"), rf"\g<1>{REDACTED}@"),  # URL passwords
]


def redact_text(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: REDACTED if _SENSITIVE_KEY_RE.match(str(k)) else _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v) for v in value]
    return value


def redact(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """A structlog processor: credentials out of every key and value, the message and tracebacks."""
    return _redacted(event_dict)


def _pre_chain() -> list[Any]:
    """What every line gets, whether it comes from `logging` or from structlog."""
    return [
        structlog.contextvars.merge_contextvars,
        add_log_context,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.CallsiteParameterAdder([structlog.processors.CallsiteParameter.PROCESS]),
    ]


def _renderers(log_format: str) -> list[Any]:
    if log_format == "json":
        return [structlog.processors.EventRenamer("message"), structlog.processors.JSONRenderer()]
    return [
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback)
    ]


def formatter(log_format: str) -> structlog.stdlib.ProcessorFormatter:
    """The formatter of every handler (also usable on its own, as the redaction test does)."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_pre_chain(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,
            *_renderers(log_format),
        ],
    )


def logging_config(log_format: str | None = None, level: str | None = None) -> dict[str, Any]:
    """The `LOGGING` dict for Django and for gunicorn's `logconfig_dict`; reads `LOG_FORMAT` and
    `LOG_LEVEL` unless told."""
    log_format = (log_format or os.environ.get("LOG_FORMAT") or "console").lower()
    if log_format not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    level = level or os.environ.get("LOG_LEVEL") or "INFO"
    structlog.configure(
        processors=[*_pre_chain(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    logging.captureWarnings(True)  # warnings become log lines too (one JSON object per line)
    console = {"class": "logging.StreamHandler", "formatter": "shelfwise"}
    own = {"handlers": ["console"], "level": level, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"shelfwise": {"()": formatter, "log_format": log_format}},
        "handlers": {"console": console},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "INFO"},
            # gunicorn's master and workers (with `-c config/gunicorn.conf.py`) write the same lines;
            # requests are logged by Django (`CorrelationIdMiddleware`), with their correlation id.
            "gunicorn.error": own,
            "gunicorn.access": {**own, "level": "WARNING"},
        },
    }
