"""Logging for every process (web, worker, relay, commands): one formatter, two formats.

`LOG_FORMAT=console` (the default) writes human-readable lines; `LOG_FORMAT=json` one JSON object
per line. Both carry what the code bound to the log context where it applies (`correlation_id`,
`causation_id`, `event_id`, `tenant_id`, `handler`), and both pass every line through `redact`
last, so tokens, payment tokens, webhook secrets and passwords never reach a log, nor the private
values of the event a handler is running on (`core.masking`).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from typing import Any

import structlog

from core.log_context import add_log_context
from core.masking import REDACTED, SENSITIVE_KEY_RE, mask_private, redact_text

LOG_FORMATS = ("console", "json")


@functools.lru_cache(maxsize=1024)
def _sensitive_key(key: str) -> bool:
    """Whether a key names a credential; lines use the same few keys over and over."""
    return SENSITIVE_KEY_RE.match(key) is not None


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(mask_private(value))
    if isinstance(value, dict):
        return {k: REDACTED if _sensitive_key(str(k)) else _redacted(v) for k, v in value.items()}
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
