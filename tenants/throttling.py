"""Throttles for `POST auth/token`: password guessing is limited per username and per address.

Each guess costs a password hash (a third of a second of CPU): without a limit, a few loops of
wrong passwords take a web server's cores. The throttles run before the password is checked, so
a refused guess costs no hash. Counts live in the default cache: set `CACHE_URL` to Redis so that
every web process shares them.
"""

from __future__ import annotations

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
        data = request.data if isinstance(request.data, dict) else {}
        username = data.get("username")
        if not isinstance(username, str) or not username:
            return None  # nothing to guess at; the address throttle still counts the request
        return self.cache_format % {"scope": self.scope, "ident": username.strip().lower()[:150]}
