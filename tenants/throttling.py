"""Throttles for password guessing, on `POST auth/token` and on the admin's login page alike.

Each guess costs a password hash (a third of a second of CPU): without a limit, a few loops of
wrong passwords take a web server's cores. The throttles run before the password is checked, so
a refused guess costs no hash. Both doors share one set of counts (the same scopes, the same cache
keys), so a guesser gains nothing by switching between them. Counts live in the default cache: set
`CACHE_URL` to Redis so that every web process shares them.

A username is hashed before it goes into a cache key: the cache (Redis) never holds the names
people typed, which are sometimes passwords typed in the wrong box.
"""

from __future__ import annotations

import hashlib

from django.http import HttpRequest
from rest_framework.throttling import SimpleRateThrottle


class TokenByAddressThrottle(SimpleRateThrottle):
    """Guesses from one client address (behind `NUM_PROXIES` trusted proxies)."""

    scope = "auth_token_address"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class TokenByUsernameThrottle(SimpleRateThrottle):
    """Guesses at one username, from anywhere."""

    scope = "auth_token_username"

    def get_cache_key(self, request, view) -> str | None:
        username = _username_of(request)
        if not isinstance(username, str) or not username:
            return None  # nothing to guess at; the address throttle still counts the request
        ident = hashlib.sha256(username.strip().lower()[:150].encode()).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": ident}


def _username_of(request) -> object:
    """The username a login request names: DRF's parsed body, or the admin form's field."""
    data = getattr(request, "data", None)
    if isinstance(data, dict):
        return data.get("username")
    if isinstance(request, HttpRequest) and request.method == "POST":
        return request.POST.get("username")
    return None


def login_wait(request) -> int | None:
    """Seconds a login attempt must wait, or None if it may go ahead (and is now counted).

    Every throttle counts the attempt, as DRF does, so the wait is the longest of them.
    """
    waits = [
        throttle.wait()
        for throttle in (TokenByAddressThrottle(), TokenByUsernameThrottle())
        if not throttle.allow_request(request, None)
    ]
    if not waits:
        return None
    return max(1, int(max(w or 1 for w in waits) + 0.999))
