"""One POST to a receiver: the private-network guard, bounded time, a bounded read, no redirects.

Connections are kept alive: each thread of each process keeps one session whose pool holds an open
connection per receiver (scheme, host and port), so a sender's next POST to the same endpoint
skips the TCP and TLS handshakes. A response read to its end gives its connection back; one cut
short at `RESPONSE_LIMIT` or past its time drops it. A connection the receiver closed while idle
is noticed before reuse and replaced.

The guard checks the address the socket actually connected to (after DNS, after any rebinding),
not the name in the URL: a hostname that resolves to loopback or private space at delivery time is
refused before a byte of the request is sent, whatever it resolved to when it was registered.
"""

from __future__ import annotations

import http.cookiejar
import ipaddress
import os
import threading
import time
from dataclasses import dataclass, field

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

CONNECT_TIMEOUT = 3.0
TOTAL_TIMEOUT = 10.0
RESPONSE_LIMIT = 1024  # bytes of the response body kept (and read)
CHUNK = 256


class PrivateAddressRefused(ConnectionError):
    """The receiver's address is loopback, private, link-local, multicast or reserved space."""


def address_refusal(address: str) -> str | None:
    """Why `address` may not be reached (None if it may); private space counts unless allowed.

    An IPv6 address that carries an IPv4 one (IPv4-mapped or -compatible, NAT64, 6to4, Teredo) is
    judged by the IPv4 address too: a translator on the way would deliver to it.
    """
    if settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS:
        return None
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    for candidate in (ip, *_embedded_ipv4(ip)):
        kind = _not_public(candidate)
        if kind is not None:
            carried = "" if candidate == ip else f" carries {candidate}, which"
            return f"{ip}{carried} is a {kind} address (WEBHOOK_ALLOW_PRIVATE_NETWORKS is off)"
    return None


# RFC 6052's well-known NAT64 prefix and RFC 8215's local-use one.
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address may lead to through a translator."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    value = int(ip)
    found = [a for a in (ip.ipv4_mapped, ip.sixtofour) if a is not None]
    if ip.teredo is not None:
        found += list(ip.teredo)
    if ip in NAT64_WELL_KNOWN or ip in NAT64_LOCAL_USE or (ip in IPV4_COMPATIBLE and value > 1):
        found.append(ipaddress.IPv4Address(value & 0xFFFFFFFF))  # the last 32 bits (a /96 prefix)
    if ip in NAT64_LOCAL_USE:
        # A /48 prefix (RFC 6052 §2.2): the IPv4 address in bits 48-63 and 72-87, around the u octet.
        found.append(ipaddress.IPv4Address(((value >> 64) & 0xFFFF) << 16 | ((value >> 40) & 0xFFFF)))
    return found


def _not_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """What kind of non-public address `ip` is, or None if it is public."""
    if ip.is_global and not ip.is_multicast:
        return None
    kind = next(
        (
            name
            for name in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified")
            if getattr(ip, f"is_{name}")
        ),
        "not public",
    )
    return kind.replace("_", "-")


class _GuardedConnectionMixin:
    def _new_conn(self):
        sock = super()._new_conn()
        reason = address_refusal(sock.getpeername()[0])
        if reason is not None:
            sock.close()
            raise PrivateAddressRefused(f"refused to connect: {reason}")
        return sock


class _GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


# Receivers whose idle connection one thread keeps (the least recently used goes beyond that).
KEPT_RECEIVERS = 64


def _new_session() -> requests.Session:
    session = requests.Session()
    # No proxy from the environment: the guard must see the receiver's own address.
    session.trust_env = False
    # No cookies kept: one receiver's cookie never rides on a later delivery (another tenant's).
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    adapter = _GuardedAdapter(max_retries=0, pool_connections=KEPT_RECEIVERS, pool_maxsize=1)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


_local = threading.local()


def _session() -> requests.Session:
    """This thread's kept-alive session; a forked child makes its own (sockets are not shared)."""
    pid = os.getpid()
    if getattr(_local, "pid", None) != pid:
        _local.session, _local.pid = _new_session(), pid
    return _local.session


@dataclass
class Outcome:
    """What one POST gave: a status code and the start of the body, or the error that prevented it."""

    status_code: int | None = None
    body: str = ""
    error: str = ""
    duration_ms: int = 0
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300 and not self.error


def post(url: str, *, body: bytes, headers: dict[str, str]) -> Outcome:
    """POST `body` to `url`; never raises for anything the receiver or the network does.

    An answer counts only if its status line and headers came within `TOTAL_TIMEOUT`; at most
    `RESPONSE_LIMIT` bytes of the body are read; a longer body drops the connection, a whole one
    leaves it open for the next POST to the receiver.
    """
    started = time.monotonic()
    outcome = Outcome()
    try:
        session = _session()
        response = session.post(
            url,
            data=body,
            headers=headers,
            timeout=(CONNECT_TIMEOUT, TOTAL_TIMEOUT),
            allow_redirects=False,
            stream=True,
        )
        try:
            answered = time.monotonic() - started
            outcome.status_code = response.status_code
            outcome.headers = dict(response.headers)
            if answered > TOTAL_TIMEOUT:
                outcome.error = f"no complete answer within {TOTAL_TIMEOUT:g} s"
            else:
                outcome.body = _read_start(response, deadline=started + TOTAL_TIMEOUT)
        finally:
            response.close()
    except requests.Timeout as exc:
        outcome.error = f"timed out: {_reason(exc)}"
    except requests.RequestException as exc:
        outcome.error = _reason(exc)
    outcome.duration_ms = int((time.monotonic() - started) * 1000)
    return outcome


def _read_start(response: requests.Response, *, deadline: float) -> str:
    read = b""
    try:
        for piece in response.iter_content(CHUNK):
            read += piece
            if len(read) >= RESPONSE_LIMIT or time.monotonic() > deadline:
                break
    except requests.RequestException:
        pass  # the status decides; a body cut short is still worth keeping as far as it went
    return read[:RESPONSE_LIMIT].decode("utf-8", errors="replace")


def _reason(exc: BaseException) -> str:
    """The innermost cause, so the refusal or the connection error reads plainly."""
    seen = exc
    while True:
        nested = seen.__cause__ or seen.__context__ or (seen.args[0] if seen.args else None)
        if isinstance(nested, PrivateAddressRefused):
            return str(nested)
        if not isinstance(nested, BaseException):
            break
        seen = nested
    return f"{type(exc).__name__}: {exc}"[:500]
