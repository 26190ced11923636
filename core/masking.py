"""Private values and credentials out of every text a person reads: error texts stored on records
(a delivery's last error, a dead letter, a parked event) and every log line.

Two kinds of thing are masked:

- the *private values* of the event being handled (an `order.placed`'s payment token, as declared
  by the event's `private_fields`): known by value, they are masked wherever they appear, whatever
  the text around them. A handler run binds them with `private_values(...)`; every log line written
  inside that block is masked (`config/logs.py`), and `mask_error` masks the error text stored after
  a failure;
- credentials recognisable by their shape (`redact_text`): a `password=…`, an `Authorization:
  Token …`, a webhook secret `whsec_…`, a payment token `tok_…`, a password in a URL.

A masked private value keeps its last four characters (`••••T123`), as payments shows a token.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

MASK = "••••"
REDACTED = "[redacted]"
# Shorter values are not masked by value: masking every "1" or "ab" in a text would mangle it,
# and no real secret is that short.
MIN_PRIVATE_LENGTH = 4

_private: ContextVar[frozenset[str]] = ContextVar("shelfwise_private_values", default=frozenset())

# A key whose value is a credential, wherever it appears (a bound value, `key=value`, JSON, a repr).
SENSITIVE_KEY = r"[\w-]*(?:password|passwd|secret|token|api[_-]?key|authorization|cookie|sessionid)"
SENSITIVE_KEY_RE = re.compile(rf"(?i)^{SENSITIVE_KEY}$")
# Each pattern, its replacement, and the words (lowercase) of which it cannot match without one:
# a text holding none of them is not scanned by it.
_PATTERNS: list[tuple[re.Pattern[str], str, tuple[str, ...]]] = [
    # "password": "x", 'payment_token': 'tok_visa', secret=whsec_…, Authorization: Token …
    (
        re.compile(
            rf"""(?i)(["']?\b{SENSITIVE_KEY}["']?\s*[:=]\s*)(?:(?:Token|Bearer|Basic)\s+)?("[^"]*"|'[^']*'|[^\s,;&}}\])]+)"""
        ),
        rf"\g<1>{REDACTED}",
        ("password", "passwd", "secret", "token", "api", "authorization", "cookie", "sessionid"),
    ),
    (
        re.compile(r"(?i)\b(Token|Bearer|Basic)\s+[A-Za-z0-9._~+/-]{16,}=*"),
        rf"\g<1> {REDACTED}",
        ("token", "bearer", "basic"),
    ),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"), f"whsec_{REDACTED}", ("whsec_",)),  # webhook signing secrets
    (re.compile(r"\btok_[A-Za-z0-9_]+"), f"tok_{REDACTED}", ("tok_",)),  # payment tokens
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/\s@]+:)[^@\s/]+@"), rf"\g<1>{REDACTED}@", ("://",)),  # URL passwords
]


# Every word one of the patterns needs, in one expression: most texts hold none of them and are
# let through after a single scan.
_ANY_NEED = re.compile("|".join(re.escape(word) for _, _, needs in _PATTERNS for word in needs))


def masked(value: object) -> str:
    """A private value as people may see it: its last four characters."""
    text = "" if value is None else str(value)
    return f"{MASK}{text[-4:]}" if len(text) > MIN_PRIVATE_LENGTH else (MASK if text else "")


def _worth_masking(values: Iterable[object]) -> frozenset[str]:
    return frozenset(text for text in (str(v) for v in values if v is not None) if len(text) >= MIN_PRIVATE_LENGTH)


@contextmanager
def private_values(values: Iterable[object]) -> Iterator[None]:
    """Mask `values` in every log line written inside the block (and in `mask_error`)."""
    values = _worth_masking(values)
    if not values:
        yield
        return
    token = _private.set(_private.get() | values)
    try:
        yield
    finally:
        _private.reset(token)


def mask_private(text: str, values: Iterable[object] = ()) -> str:
    """`text` with every private value bound by `private_values` (and `values`) masked."""
    known = _private.get() | _worth_masking(values) if values else _private.get()
    if not known:
        return text
    # Longest first: a value that contains another is masked whole.
    for value in sorted(known, key=len, reverse=True):
        if value in text:
            text = text.replace(value, masked(value))
    return text


def redact_text(text: str) -> str:
    """`text` with every credential recognisable by its shape replaced by `[redacted]`."""
    folded = text.casefold()  # folded as (?i) folds it, the long s and the Kelvin sign included
    if _ANY_NEED.search(folded) is None:
        return text
    for pattern, replacement, needs in _PATTERNS:
        if any(word in folded for word in needs):
            text = pattern.sub(replacement, text)
    return text


def mask_error(text: str, values: Iterable[object] = ()) -> str:
    """An error text as it may be stored and shown: private values and credentials masked."""
    return redact_text(mask_private(text, values))
