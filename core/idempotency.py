"""Idempotency keys for POST endpoints, after the IETF draft "The Idempotency-Key HTTP Header Field".

A client sends `Idempotency-Key: <key>` so it can retry a request safely; a view opts in by
decorating its `post` with `@idempotent` (as `POST orders/` does):

- the first request with a key claims it (`in_progress`) in a transaction of its own, so a
  concurrent request with the same key sees the claim and is told 409;
- the view's change and the key's response are written in one transaction, so a key is
  `completed` if and only if the change committed; the same key and body later get that response
  back, replayed;
- the same key with another request (method, path or body) is 422; keys are per user and live 24 hours;
- a request that fails (bad input, a conflict, a crash) wrote nothing, so its claim is released
  and the client may retry with the same key.

What marks a claim as alive is the request's own database session. On PostgreSQL the attempt
holds a session advisory lock on (user, key) from its claim to its end: a request that finds the
lock held by another session is 409, and a request that gets the lock may take over a claim left
`in_progress` at once, since the attempt that wrote it is gone. A process killed mid-request (a
SIGKILLed web worker) loses its connection, and PostgreSQL frees the lock with it, so the
client's retry gets through as soon as the dead session has ended. SQLite (one writer, one
machine) has no such lock: there a claim left `in_progress` is taken over once it is older
than `IDEMPOTENCY_STALE_AFTER`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request
from rest_framework.response import Response

from core.errors import ApplicationError, Conflict, Unprocessable
from core.models import IdempotencyKey

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from rest_framework.views import APIView

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_MAX_LENGTH = IdempotencyKey._meta.get_field("key").max_length
# A quoted key, or a bare one that neither starts with a quote nor starts or ends with a space.
KEY_PATTERN = re.compile(
    rf'"(?P<quoted>[ -~]{{1,{KEY_MAX_LENGTH}}})"|(?P<bare>[!#-~](?:[ -~]{{0,{KEY_MAX_LENGTH - 2}}}[!-~])?)'
)
KEY_LIFETIME = timedelta(hours=24)


def stale_after() -> timedelta:
    """Where no session lock marks a claim as alive (SQLite), a claim older than this belongs to an
    attempt that died: a new attempt may take it over.

    `IDEMPOTENCY_STALE_AFTER` seconds (60). Taking over a live attempt is safe whatever the value
    (only the attempt that still holds the claim can complete it), but a shorter one lets a client
    whose request died with its web process get its answer sooner. On PostgreSQL the session
    lock decides instead, at once.
    """
    return timedelta(seconds=getattr(settings, "IDEMPOTENCY_STALE_AFTER", 60))


@dataclass(frozen=True)
class StoredResponse:
    """An HTTP status and JSON body, as first answered and as replayed."""

    status: int
    body: Any


@dataclass(frozen=True)
class IdempotencyClaim:
    """The right of one attempt to complete a key: valid while the key is still locked at `locked_at`.

    `session_lock` is the advisory lock the attempt's database session holds on the key
    (PostgreSQL), None where there is none; `idempotency_key_unlock` gives it up.
    """

    key_id: int
    locked_at: datetime
    session_lock: int | None = None


def session_locks_available() -> bool:
    """Whether the database can hold a lock for the life of a session (PostgreSQL's advisory locks)."""
    return connection.vendor == "postgresql"


def _session_lock_id(*, user: AbstractBaseUser, key: str) -> int:
    """The advisory lock of one user's key: 64 bits of a hash, in a namespace of its own."""
    digest = hashlib.sha256(f"shelfwise.idempotency\n{user.pk}\n{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _try_session_lock(lock_id: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock_id])
        return bool(cursor.fetchone()[0])


def _session_unlock(lock_id: int) -> None:
    # A connection lost meanwhile took the lock with it: nothing is left to give up.
    with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s)", [lock_id])


def idempotency_key_from_header(value: str | None) -> str | None:
    """The key in an `Idempotency-Key` header value, or None if there is no header.

    The draft sends the key as a structured-field string (`"8e03…"`); a bare token is accepted
    too. Either is 1 to `KEY_MAX_LENGTH` printable ASCII characters (`KEY_PATTERN`, as the
    OpenAPI document says); anything else raises `ApplicationError` (400).
    """
    if value is None:
        return None
    match = KEY_PATTERN.fullmatch(value)
    if match is None:
        message = f"The {HEADER} header must hold 1 to {KEY_MAX_LENGTH} printable ASCII characters."
        raise ApplicationError(message, extra={"idempotency_key": [message]})
    return match["quoted"] or match["bare"]


def request_fingerprint(*, method: str, path: str, body: Any) -> str:
    """sha256 of the method, the path and the body as canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, cls=DjangoJSONEncoder)
    return hashlib.sha256(f"{method.upper()}\n{path}\n{canonical}".encode()).hexdigest()


def _in_progress_elsewhere() -> Conflict:
    return Conflict(
        f"A request with this {HEADER} is still being processed; retry later.",
        extra={"idempotency_key": ["A request with this key is in progress."]},
    )


def _used_for_another_request() -> Unprocessable:
    return Unprocessable(
        f"This {HEADER} was already used with another request; use a new key for a new request.",
        extra={"idempotency_key": ["Already used with another request."]},
    )


def idempotency_key_claim(*, user: AbstractBaseUser, key: str, fingerprint: str) -> IdempotencyClaim | StoredResponse:
    """Claim `key` for a new attempt, or return the response it already completed with.

    Raises `Unprocessable` (422) if the key was used for another request and `Conflict` (409)
    while an earlier attempt with it is still in progress. A claim returned on PostgreSQL holds
    the key's session lock: the caller gives it up with `idempotency_key_unlock` once the attempt
    has committed or failed (`idempotency_key_run` does).
    """
    if not session_locks_available():
        return _claim(user=user, key=key, fingerprint=fingerprint, session_lock=None)
    lock_id = _session_lock_id(user=user, key=key)
    if not _try_session_lock(lock_id):
        # Another session's attempt is alive: it alone may write the key. Only read it.
        record = IdempotencyKey.objects.filter(user=user, key=key, created_at__gt=timezone.now() - KEY_LIFETIME).first()
        if record is not None and record.fingerprint != fingerprint:
            raise _used_for_another_request()
        if record is not None and record.state == IdempotencyKey.State.COMPLETED:
            return StoredResponse(status=record.response_status, body=record.response_body)
        raise _in_progress_elsewhere()
    try:
        outcome = _claim(user=user, key=key, fingerprint=fingerprint, session_lock=lock_id)
    except BaseException:
        _session_unlock(lock_id)
        raise
    if isinstance(outcome, StoredResponse):
        _session_unlock(lock_id)
    return outcome


def _claim(
    *, user: AbstractBaseUser, key: str, fingerprint: str, session_lock: int | None
) -> IdempotencyClaim | StoredResponse:
    now = timezone.now()
    with transaction.atomic():
        # Expired keys are forgotten, so the table holds at most a day of each user's keys and an
        # expired key starts afresh.
        IdempotencyKey.objects.filter(user=user, created_at__lte=now - KEY_LIFETIME).delete()
        record, created = IdempotencyKey.objects.select_for_update().get_or_create(
            user=user, key=key, defaults={"fingerprint": fingerprint, "created_at": now, "locked_at": now}
        )
        if created:
            return IdempotencyClaim(key_id=record.pk, locked_at=now, session_lock=session_lock)
        if record.fingerprint != fingerprint:
            raise _used_for_another_request()
        if record.state == IdempotencyKey.State.COMPLETED:
            return StoredResponse(status=record.response_status, body=record.response_body)
        # In progress. Under the session lock, its attempt is gone (its session ended); without
        # one, it is taken to be gone once stale.
        if session_lock is None and record.locked_at is not None and record.locked_at > now - stale_after():
            raise _in_progress_elsewhere()
        record.locked_at = now
        record.save(update_fields=["locked_at"])
        return IdempotencyClaim(key_id=record.pk, locked_at=now, session_lock=session_lock)


def idempotency_key_complete(*, claim: IdempotencyClaim, response: StoredResponse) -> None:
    """Store `response` as the key's outcome, in the transaction that made the change.

    Raises `Conflict` (409), rolling that transaction back, if another attempt took the key over
    in the meantime: only one attempt's change may commit.
    """
    completed = IdempotencyKey.objects.filter(
        pk=claim.key_id, state=IdempotencyKey.State.IN_PROGRESS, locked_at=claim.locked_at
    ).update(state=IdempotencyKey.State.COMPLETED, response_status=response.status, response_body=response.body)
    if not completed:
        raise Conflict(
            f"Another request with this {HEADER} took over; retry to get its response.",
            extra={"idempotency_key": ["Taken over by another request."]},
        )


def idempotency_key_release(*, claim: IdempotencyClaim) -> None:
    """Give the key up after an attempt that wrote nothing, so that a retry may use it."""
    IdempotencyKey.objects.filter(
        pk=claim.key_id, state=IdempotencyKey.State.IN_PROGRESS, locked_at=claim.locked_at
    ).delete()


def idempotency_key_unlock(*, claim: IdempotencyClaim) -> None:
    """Give up the claim's session lock (if any), after its attempt committed or was released."""
    if claim.session_lock is not None:
        _session_unlock(claim.session_lock)


def idempotency_key_run(
    *, user: AbstractBaseUser, key: str, fingerprint: str, perform: Callable[[], StoredResponse]
) -> tuple[StoredResponse, bool]:
    """Run `perform` at most once per (user, key); returns its response and whether it is a replay.

    `perform` runs in one transaction with the key's completion. If it raises, nothing of it
    committed: the claim is released and the error goes on to the caller. The session lock is
    held until then, so a concurrent duplicate is 409 until the outcome is stored.
    """
    outcome = idempotency_key_claim(user=user, key=key, fingerprint=fingerprint)
    if isinstance(outcome, StoredResponse):
        return outcome, True
    try:
        try:
            with transaction.atomic():
                response = perform()
                idempotency_key_complete(claim=outcome, response=response)
        except BaseException:
            idempotency_key_release(claim=outcome)
            raise
    finally:
        idempotency_key_unlock(claim=outcome)
    return response, False


# The header as the OpenAPI schema of an `@idempotent` operation documents it.
IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    HEADER,
    {"type": "string", "minLength": 1, "maxLength": KEY_MAX_LENGTH + 2, "pattern": f"^(?:{KEY_PATTERN.pattern})$"},
    OpenApiParameter.HEADER,
    description="Retry safely: the same key and body within 24 hours give back the first response.",
)


def idempotent(post: Callable[..., Response]) -> Callable[..., Response]:
    """Make a view's `post` safe to retry with an `Idempotency-Key` header (for authenticated users).

    Without the header, `post` simply runs. With it, `post` runs at most once per (user, key) in
    one transaction with the key's completion, and its status and JSON body are stored; a repeat
    gets them back with `Idempotent-Replayed: true`. `post` reports failure by raising (as DRF
    validation and the domain errors do), so a failed attempt writes nothing and frees the key.
    """

    @functools.wraps(post)
    def idempotent_post(view: APIView, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = idempotency_key_from_header(request.headers.get(HEADER))
        if key is None:
            return post(view, request, *args, **kwargs)

        def perform() -> StoredResponse:
            response = post(view, request, *args, **kwargs)
            return StoredResponse(status=response.status_code, body=response.data)

        fingerprint = request_fingerprint(method=request.method, path=request.path, body=request.data)
        result, replayed = idempotency_key_run(user=request.user, key=key, fingerprint=fingerprint, perform=perform)
        response = Response(result.body, status=result.status)
        if replayed:
            response[REPLAYED_HEADER] = "true"
        return response

    return idempotent_post
