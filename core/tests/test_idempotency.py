"""Idempotency keys: claim, replay, mismatch, in progress while its session lives, takeover of a dead
attempt's claim (at once under a session lock, once stale without), release, expiry."""

import queue
import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from core import idempotency
from core.errors import ApplicationError, Conflict, Unprocessable
from core.idempotency import (
    IdempotencyClaim,
    StoredResponse,
    idempotency_key_claim,
    idempotency_key_complete,
    idempotency_key_from_header,
    idempotency_key_run,
    request_fingerprint,
)
from core.models import IdempotencyKey
from testsupport.processes import wait_until

pytestmark = pytest.mark.django_db

CREATED = StoredResponse(status=201, body={"id": "42", "status": "placed"})


def fingerprint(body) -> str:
    return request_fingerprint(method="POST", path="/api/v1/orders/", body=body)


def test_the_fingerprint_is_of_the_canonical_json():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert fingerprint({"a": 1}) != request_fingerprint(method="POST", path="/api/v1/other/", body={"a": 1})
    assert fingerprint({"a": 1}) != request_fingerprint(method="PUT", path="/api/v1/orders/", body={"a": 1})
    assert len(fingerprint({})) == 64


@pytest.mark.parametrize(
    ("header", "key"),
    [
        (None, None),
        ("abc-123", "abc-123"),
        ('"8e03978e-40d5"', "8e03978e-40d5"),
        ("k k", "k k"),
        ("x" * 255, "x" * 255),
    ],
)
def test_keys_are_read_from_the_header(header, key):
    assert idempotency_key_from_header(header) == key


@pytest.mark.parametrize("header", ["", '""', "   ", " k ", "x" * 256, "tab\there", "caf\u00e9", '"abc'])
def test_an_unusable_key_is_a_400(header):
    with pytest.raises(ApplicationError) as raised:
        idempotency_key_from_header(header)
    assert raised.value.status_code == 400
    assert "idempotency_key" in raised.value.extra


def test_a_completed_key_replays_and_refuses_another_request(customer):
    claim = idempotency_key_claim(user=customer, key="k1", fingerprint=fingerprint({"a": 1}))
    assert isinstance(claim, IdempotencyClaim)
    idempotency_key_complete(claim=claim, response=CREATED)

    assert idempotency_key_claim(user=customer, key="k1", fingerprint=fingerprint({"a": 1})) == CREATED
    with pytest.raises(Unprocessable):
        idempotency_key_claim(user=customer, key="k1", fingerprint=fingerprint({"a": 2}))


def _backend_alive(pid: int) -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone() is not None


class OtherSession:
    """Another database session, as another web process has: calls run in a thread of its own,
    on its own connection, until `close()` ends the session (as a killed process's would end)."""

    def __init__(self) -> None:
        self._calls: queue.Queue = queue.Queue()
        self._backend_pid: int | None = None
        self._thread = threading.Thread(target=self._serve)
        self._thread.start()

    def _serve(self) -> None:
        try:
            while (item := self._calls.get()) is not None:
                call, result = item
                try:
                    result.put((True, call()))
                except BaseException as exc:  # handed back to the caller
                    result.put((False, exc))
                own = connections["default"].connection
                if own is not None and connections["default"].vendor == "postgresql":
                    self._backend_pid = own.info.backend_pid
        finally:
            connections.close_all()

    def run(self, call):
        result: queue.Queue = queue.Queue()
        self._calls.put((call, result))
        ok, value = result.get(timeout=30)
        if not ok:
            raise value
        return value

    def close(self) -> None:
        """End the session and wait until its server process is gone, with the locks it held (the
        server ends it a moment after the client hangs up)."""
        self._calls.put(None)
        self._thread.join(30)
        if self._backend_pid is not None:
            wait_until(lambda: not _backend_alive(self._backend_pid), timeout=10, what="the session's end")


@pytest.fixture
def other_session():
    session = OtherSession()
    yield session
    session.close()


@pytest.mark.django_db(transaction=True)
def test_a_key_in_progress_is_a_conflict_while_its_session_lives_and_free_once_it_ends(customer, other_session):
    first = other_session.run(lambda: idempotency_key_claim(user=customer, key="k1", fingerprint=fingerprint({})))
    assert isinstance(first, IdempotencyClaim)
    assert first.session_lock is not None
    # However old the claim, its attempt is alive while its session is.
    IdempotencyKey.objects.update(locked_at=timezone.now() - timedelta(hours=1))
    with pytest.raises(Conflict):
        idempotency_key_claim(user=customer, key="k1", fingerprint=fingerprint({}))
    with pytest.raises(Unprocessable):
        idempotency_key_claim(user=customer, key="k1", fingerprint=fingerprint({"another": "body"}))

    # The process dies: its session ends, and the key is free at once, however recent its claim.
    IdempotencyKey.objects.update(locked_at=first.locked_at)
    other_session.close()
    second = idempotency_key_claim(user=customer, key="k1", fingerprint=fingerprint({}))
    assert isinstance(second, IdempotencyClaim)
    assert second.locked_at > first.locked_at
    with pytest.raises(Conflict):  # the attempt that was taken over may not complete any more
        idempotency_key_complete(claim=first, response=CREATED)
    idempotency_key_complete(claim=second, response=CREATED)
    assert IdempotencyKey.objects.get().state == IdempotencyKey.State.COMPLETED


@pytest.mark.django_db(transaction=True)
def test_a_run_gives_its_session_lock_up_whether_it_completed_or_failed(customer, other_session):
    def fail() -> StoredResponse:
        raise ApplicationError("bad input")

    with pytest.raises(ApplicationError):
        other_session.run(
            lambda: idempotency_key_run(user=customer, key="k1", fingerprint=fingerprint({}), perform=fail)
        )
    # The other session lives on (as a web worker does, to its next request) but holds nothing.
    assert idempotency_key_run(user=customer, key="k1", fingerprint=fingerprint({}), perform=lambda: CREATED) == (
        CREATED,
        False,
    )
    assert other_session.run(
        lambda: idempotency_key_run(user=customer, key="k1", fingerprint=fingerprint({}), perform=fail)
    ) == (CREATED, True)
    assert isinstance(
        other_session.run(lambda: idempotency_key_claim(user=customer, key="k2", fingerprint=fingerprint({}))),
        IdempotencyClaim,
    )


@pytest.fixture
def without_session_locks(monkeypatch):
    """Claims as on a database without session locks (SQLite): only their age tells a dead one."""
    monkeypatch.setattr(idempotency, "session_locks_available", lambda: False)


def test_without_session_locks_a_key_in_progress_is_a_conflict_until_it_is_stale(customer, without_session_locks):
    first = idempotency_key_claim(user=customer, key="k1", fingerprint=fingerprint({}))
    assert first.session_lock is None
    with pytest.raises(Conflict):
        idempotency_key_claim(user=customer, key="k1", fingerprint=fingerprint({}))

    IdempotencyKey.objects.update(locked_at=timezone.now() - timedelta(seconds=61))
    second = idempotency_key_claim(user=customer, key="k1", fingerprint=fingerprint({}))
    assert isinstance(second, IdempotencyClaim)
    assert second.locked_at > first.locked_at

    # The attempt that was taken over may not complete any more; the new one may.
    with pytest.raises(Conflict):
        idempotency_key_complete(claim=first, response=CREATED)
    idempotency_key_complete(claim=second, response=CREATED)
    assert IdempotencyKey.objects.get().state == IdempotencyKey.State.COMPLETED


def test_how_soon_a_claim_is_stale_is_a_setting(customer, settings, without_session_locks):
    settings.IDEMPOTENCY_STALE_AFTER = 5
    idempotency_key_claim(user=customer, key="k1", fingerprint=fingerprint({}))
    IdempotencyKey.objects.update(locked_at=timezone.now() - timedelta(seconds=4))
    with pytest.raises(Conflict):
        idempotency_key_claim(user=customer, key="k1", fingerprint=fingerprint({}))

    IdempotencyKey.objects.update(locked_at=timezone.now() - timedelta(seconds=6))
    assert isinstance(idempotency_key_claim(user=customer, key="k1", fingerprint=fingerprint({})), IdempotencyClaim)


def test_keys_are_per_user(customer, django_user_model):
    other = django_user_model.objects.create_user(username="dave")
    idempotency_key_complete(
        claim=idempotency_key_claim(user=customer, key="same", fingerprint=fingerprint({"a": 1})), response=CREATED
    )
    assert isinstance(
        idempotency_key_claim(user=other, key="same", fingerprint=fingerprint({"a": 2})), IdempotencyClaim
    )


def test_an_expired_key_starts_afresh(customer):
    idempotency_key_complete(
        claim=idempotency_key_claim(user=customer, key="old", fingerprint=fingerprint({"a": 1})), response=CREATED
    )
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=24, seconds=1))
    claim = idempotency_key_claim(user=customer, key="old", fingerprint=fingerprint({"a": 2}))
    assert isinstance(claim, IdempotencyClaim)
    record = IdempotencyKey.objects.get()
    assert record.state == IdempotencyKey.State.IN_PROGRESS
    assert record.response_body is None
    assert record.fingerprint == fingerprint({"a": 2})


def test_a_users_expired_keys_are_forgotten_when_they_use_a_new_one(customer, django_user_model):
    other = django_user_model.objects.create_user(username="dave")
    for user, key in ((customer, "old-1"), (customer, "old-2"), (other, "theirs")):
        idempotency_key_complete(
            claim=idempotency_key_claim(user=user, key=key, fingerprint=fingerprint({})), response=CREATED
        )
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))
    idempotency_key_claim(user=customer, key="new", fingerprint=fingerprint({}))
    assert set(IdempotencyKey.objects.values_list("key", flat=True)) == {"new", "theirs"}


def test_run_performs_once_and_replays(customer):
    calls = []

    def perform() -> StoredResponse:
        calls.append(1)
        return CREATED

    assert idempotency_key_run(user=customer, key="k", fingerprint=fingerprint({}), perform=perform) == (CREATED, False)
    assert idempotency_key_run(user=customer, key="k", fingerprint=fingerprint({}), perform=perform) == (CREATED, True)
    assert len(calls) == 1


def test_a_failed_attempt_releases_the_key_and_keeps_nothing_it_wrote(customer, django_user_model):
    def perform() -> StoredResponse:
        django_user_model.objects.create_user(username="written-then-rolled-back")
        raise ApplicationError("bad input")

    with pytest.raises(ApplicationError):
        idempotency_key_run(user=customer, key="k", fingerprint=fingerprint({"a": 1}), perform=perform)
    assert not IdempotencyKey.objects.exists()
    assert not django_user_model.objects.filter(username="written-then-rolled-back").exists()

    # The same key may now be used, even for another body.
    response, replayed = idempotency_key_run(
        user=customer, key="k", fingerprint=fingerprint({"a": 2}), perform=lambda: CREATED
    )
    assert (response, replayed) == (CREATED, False)


@pytest.mark.django_db(transaction=True)
def test_an_attempt_taken_over_midway_commits_nothing(customer, django_user_model):
    def take_over() -> None:
        try:
            IdempotencyKey.objects.update(locked_at=timezone.now())
        finally:
            connections.close_all()

    def perform_slowly() -> StoredResponse:
        django_user_model.objects.create_user(username="first-attempt")
        # Meanwhile the claim went stale and another attempt, in another process, took it over.
        thread = threading.Thread(target=take_over)
        thread.start()
        thread.join(10)
        return CREATED

    with pytest.raises(Conflict):
        idempotency_key_run(user=customer, key="k", fingerprint=fingerprint({}), perform=perform_slowly)
    assert not django_user_model.objects.filter(username="first-attempt").exists()
    assert IdempotencyKey.objects.get().state == IdempotencyKey.State.IN_PROGRESS  # the other attempt's claim
