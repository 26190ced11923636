"""Who caused an event: its `actor`.

An actor is `"<kind>:<user id>"`, with kind `customer`, `staff` or `operator`, or `"system"` for
what nobody asked for at that moment (scheduled work, relays, sweeps). The boundary sets it (an API
request or an admin page from its authenticated user, a management command from `--by`), and an
event caused by another event has that event's actor (`domain_events.context`).
"""

from __future__ import annotations

import re

SYSTEM = "system"
KINDS = ("customer", "staff", "operator")
ACTOR_PATTERN = r"^(system|(customer|staff|operator):[0-9A-Za-z-]{1,64})$"
_VALID = re.compile(ACTOR_PATTERN)


def actor_of(user: object) -> str:
    """The actor of an authenticated user: an operator (no bookstore), a bookstore's staff, or its
    customer; `system` for no user or an anonymous one."""
    if user is None or not getattr(user, "is_authenticated", False):
        return SYSTEM
    if not getattr(user, "tenant_id", None):
        return f"operator:{user.pk}"
    if getattr(user, "is_staff", False):
        return f"staff:{user.pk}"
    return f"customer:{user.pk}"


def is_actor(value: str) -> bool:
    return bool(_VALID.match(value))


def kind_of(actor: str) -> str:
    """`customer`, `staff`, `operator` or `system`."""
    return actor.split(":", 1)[0]


def command_actor(username: str | None) -> str:
    """The actor of a management command: the user named by its `--by`, else `system`.

    An unknown or inactive user is a `CommandError`: a command never acts as nobody in particular
    when it was told who it acts for.
    """
    from django.contrib.auth import get_user_model
    from django.core.management.base import CommandError

    if username is None:
        return SYSTEM
    user = get_user_model().objects.filter(username=username).first()
    if user is None or not user.is_active:
        raise CommandError(f"--by: no active user named {username!r}")
    return actor_of(user)


def add_by_argument(parser) -> None:
    """`--by USERNAME`, for a management command whose changes publish events."""
    parser.add_argument(
        "--by",
        metavar="USERNAME",
        help="Record the events this command publishes as caused by this user (default: system).",
    )
