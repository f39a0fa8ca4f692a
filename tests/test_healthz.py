"""/healthz: readiness for load balancers, without a login, always quick."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.db import OperationalError, connections, transaction
from django.test import Client
from django.urls import reverse

from executions.views import health
from sfnui.celery import app

# The checks run in threads of their own, with their own database
# connections: they must see committed data, not a test transaction.
pytestmark = pytest.mark.django_db(transaction=True)

URL = reverse("healthz")


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Point the Celery app at another broker for one test."""

    def use(url: str) -> None:
        monkeypatch.setitem(app.conf, "broker_url", url)
        monkeypatch.setitem(app.conf, "broker_write_url", None)
        monkeypatch.setitem(app.conf, "broker_transport_options", {})

    return use


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_it_is_ok_without_a_login(client: Client) -> None:
    started = time.monotonic()
    response = client.get(URL)
    assert time.monotonic() - started < 5
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    transport = "redis" if settings.REDIS_URL else "filesystem"
    assert body["broker"] == {"ok": True, "transport": transport, "ms": body["broker"]["ms"]}
    assert body["cache"]["ok"] is True
    assert body["sync"]["last_ok_at"] is None
    assert body["sync"]["stale"] is True


def test_a_writer_holding_the_database_leaves_no_check_queued_behind_it(
    client: Client, django_user_model: Any
) -> None:
    """The sync or a migration holds the write lock (SQLite has one for the
    whole file): /healthz answers, ready, and no check thread is left waiting
    for the lock (one that waits for SQLite's busy timeout, 30 s, holds up
    the writers queued behind it)."""
    held, release = threading.Event(), threading.Event()

    def writer() -> None:
        try:
            with transaction.atomic():
                django_user_model.objects.create(username="writer")
                held.set()
                release.wait(15)
        finally:
            connections.close_all()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert held.wait(10)
        response = client.get(URL)
        body = response.json()
        assert response.status_code == 200, body
        assert body["cache"]["ok"] is True
        assert body["database"]["ok"] is True
        waiting = [t.name for t in threading.enumerate() if t.name.startswith("healthz-")]
        assert waiting == []
    finally:
        release.set()
        thread.join()


def test_head_works_and_other_methods_do_not(client: Client) -> None:
    assert client.head(URL).status_code == 200
    assert client.post(URL).status_code == 405


def test_a_broker_that_is_down_is_a_503(client: Client, broker: Callable[[str], None]) -> None:
    broker(f"redis://:s3cret-pass@127.0.0.1:{closed_port()}/5")
    started = time.monotonic()
    response = client.get(URL)
    assert time.monotonic() - started < 5
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["broker"]["ok"] is False
    assert "refused" in body["broker"]["error"]
    assert body["database"]["ok"] is True
    assert "s3cret-pass" not in response.content.decode()


def test_a_redis_broker_that_is_up_is_ok(client: Client, broker: Callable[[str], None]) -> None:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    broker("redis://127.0.0.1:6379/5")
    response = client.get(URL)
    assert response.status_code == 200
    assert response.json()["broker"]["transport"] == "redis"


def test_database_errors_are_a_503(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> dict[str, Any]:
        raise OperationalError(
            'connection to server at "db" (10.0.0.5), port 5432 failed: Connection refused\n'
            "\tIs the server running on that host and accepting TCP/IP connections?"
        )

    monkeypatch.setitem(health.CHECKS, "database", broken)
    response = client.get(URL)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["database"]["ok"] is False
    assert body["database"]["error"].startswith("OperationalError: connection to server")
    assert "\n" not in body["database"]["error"]
    assert body["sync"] == {"error": "no database"}


def test_a_check_that_hangs_is_cut_short(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    def hangs() -> dict[str, Any]:
        time.sleep(5)
        return {}

    monkeypatch.setitem(health.CHECKS, "database", hangs)
    monkeypatch.setattr(health, "CHECK_TIMEOUT", 0.5)
    started = time.monotonic()
    response = client.get(URL)
    assert time.monotonic() - started < 2
    assert response.status_code == 503
    assert response.json()["database"] == {"ok": False, "error": "no answer within 0.5 s"}


def test_a_cache_that_is_down_is_reported_but_not_fatal(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down() -> dict[str, Any]:
        raise ConnectionError("Error 111 connecting to redis://:pw@127.0.0.1:6379/0")

    monkeypatch.setitem(health.CHECKS, "cache", down)
    response = client.get(URL)
    assert response.status_code == 200
    body = response.json()
    assert body["cache"]["ok"] is False
    assert "pw@" not in body["cache"]["error"]
    assert "redis://***@127.0.0.1:6379/0" in body["cache"]["error"]
