"""The names that keep pytest-xdist workers apart (testsupport/workers.py, docs/testing.md)."""

from __future__ import annotations

import os

import pytest
from django.conf import settings
from django.db import connection

from testsupport.workers import CLAIMED_VARIABLE, per_worker, redis_url_for_worker, worker_services


def test_each_worker_gets_the_next_redis_database():
    assert redis_url_for_worker("redis://127.0.0.1:6379/8", 0) == "redis://127.0.0.1:6379/8"
    assert redis_url_for_worker("redis://127.0.0.1:6379/8", 1) == "redis://127.0.0.1:6379/9"
    assert redis_url_for_worker("redis://127.0.0.1:6379", 1) == "redis://127.0.0.1:6379/1"
    assert redis_url_for_worker("filesystem://localhost//", 3) == "filesystem://localhost//"
    with pytest.raises(ValueError, match="Redis has 16"):
        redis_url_for_worker("redis://127.0.0.1:6379/15", 1)


def test_a_worker_moves_the_broker_once_and_its_processes_keep_what_they_inherit():
    worker = {"PYTEST_XDIST_WORKER": "gw1", "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0"}
    moved = worker_services(worker)
    assert moved == {"CELERY_BROKER_URL": "redis://127.0.0.1:6379/1", CLAIMED_VARIABLE: "gw1"}
    # A relay or Celery worker started by that pytest worker inherits the moved URL and the mark.
    assert worker_services({**worker, **moved}) == {}
    # Given another broker on purpose (a private Redis), it keeps that one too.
    assert worker_services({**worker, **moved, "CELERY_BROKER_URL": "redis://127.0.0.1:7000/0"}) == {}
    assert worker_services({"CELERY_BROKER_URL": "redis://127.0.0.1:6379/0"}) == {}


def test_this_process_uses_the_database_and_broker_of_its_worker(db, monkeypatch):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    assert os.environ["CELERY_BROKER_URL"] == settings.CELERY_BROKER_URL
    assert os.environ.get(CLAIMED_VARIABLE, "") == worker
    if worker:
        assert connection.settings_dict["NAME"].endswith(f"_{worker}")
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    assert per_worker("shelfwise_standby") == "shelfwise_standby_gw3"
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    assert per_worker("shelfwise_standby") == "shelfwise_standby"
