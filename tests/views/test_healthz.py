"""/healthz: readiness for load balancers, without a login, always quick."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import OperationalError, connection, connections, transaction
from django.test import Client
from django.urls import reverse

from executions import probes
from sfnui.celery import app

# The checks run in threads of their own, with their own database
# connections: they must see committed data, not a test transaction.
pytestmark = pytest.mark.django_db(transaction=True)

URL = reverse("healthz")
# /healthz answers within its own deadline (probes.CHECK_TIMEOUT: a check
# that has not answered by then is a failure). The tests allow this much
# more for a loaded machine: what they guard against is waiting for a
# connect timeout or SQLite's busy timeout (30 s), not a slow second.
SLACK = 5.0


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


def test_it_is_ok_without_a_login_and_says_no_more(client: Client) -> None:
    """A load balancer, or anyone on the network: ok or not per check, no
    database vendor, broker transport, cache backend or timings."""
    started = time.monotonic()
    response = client.get(URL)
    assert time.monotonic() - started < probes.CHECK_TIMEOUT + SLACK
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    assert response.json() == {
        "status": "ok",
        "database": {"ok": True},
        "broker": {"ok": True},
        "cache": {"ok": True},
        "static": {"ok": True},
    }


def test_a_signed_in_person_gets_what_each_check_found(viewer_client: Client) -> None:
    response = viewer_client.get(URL)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert body["database"]["vendor"] == connection.vendor
    transport = "redis" if settings.REDIS_URL else "filesystem"
    assert body["broker"] == {"ok": True, "transport": transport, "ms": body["broker"]["ms"]}
    assert body["cache"]["ok"] is True
    assert body["cache"]["backend"]
    assert body["static"]["ok"] is True
    assert body["sync"]["last_ok_at"] is None
    assert body["sync"]["stale"] is True


def test_a_writer_holding_the_lock_a_moment_is_waited_for(
    client: Client, django_user_model: Any
) -> None:
    """The sync holds the write lock for a moment at a time (SQLite has one
    for the whole file): the write probe waits for it, /healthz is ready."""
    with held_write_lock(django_user_model) as release:
        threading.Timer(0.3, release.set).start()
        response = client.get(URL)
    assert response.status_code == 200, response.json()
    assert response.json()["database"] == {"ok": True}


def test_a_writer_holding_the_lock_longer_than_the_check_is_a_503_and_no_check_waits_on(
    viewer_client: Client, django_user_model: Any
) -> None:
    """A migration or a stuck script holds the write lock: the database
    cannot be written (no sign-in, no stop), so the process is not ready;
    and no check thread is left queueing for the lock after the answer (one
    that waited SQLite's busy timeout, 30 s, held up the writers behind it)."""
    with held_write_lock(django_user_model):
        started = time.monotonic()
        response = viewer_client.get(URL)
        took = time.monotonic() - started
        waiting = [t.name for t in threading.enumerate() if t.name.startswith("healthz-")]
    body = response.json()
    assert response.status_code == 503, body
    assert took < probes.CHECK_TIMEOUT + SLACK
    assert body["database"]["ok"] is False
    assert "cannot be written" in body["database"]["error"]
    assert body["cache"]["ok"] is True
    assert waiting == []


@contextmanager
def held_write_lock(django_user_model: Any) -> Iterator[threading.Event]:
    """Another connection in a write transaction (on SQLite: the lock of the
    whole file; on PostgreSQL, the table the probe writes locked as well)
    until the event is set or the block ends."""
    held, release = threading.Event(), threading.Event()

    def writer() -> None:
        try:
            with transaction.atomic():
                django_user_model.objects.create(username="writer")
                if connection.vendor == "postgresql":
                    with connection.cursor() as cursor:
                        cursor.execute("LOCK TABLE django_migrations IN EXCLUSIVE MODE")
                held.set()
                release.wait(15)
        finally:
            connections.close_all()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert held.wait(10)
        yield release
    finally:
        release.set()
        thread.join()


def test_head_works_and_other_methods_do_not(client: Client) -> None:
    assert client.head(URL).status_code == 200
    assert client.post(URL).status_code == 405


def test_a_broker_that_is_down_is_a_503(
    client: Client, viewer_client: Client, broker: Callable[[str], None]
) -> None:
    broker(f"redis://:s3cret-pass@10.0.0.7:{closed_port()}/5")
    started = time.monotonic()
    response = Client().get(URL)
    assert time.monotonic() - started < probes.CHECK_TIMEOUT + SLACK
    assert response.status_code == 503
    assert response.json()["broker"] == {"ok": False}
    assert "10.0.0.7" not in response.content.decode()

    broker(f"redis://:s3cret-pass@127.0.0.1:{closed_port()}/5")
    response = viewer_client.get(URL)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["broker"]["ok"] is False
    assert "refused" in body["broker"]["error"]
    assert body["database"]["ok"] is True
    assert "s3cret-pass" not in response.content.decode()


def test_a_redis_broker_that_is_up_is_ok(
    viewer_client: Client, broker: Callable[[str], None]
) -> None:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    broker("redis://127.0.0.1:6379/5")
    response = viewer_client.get(URL)
    assert response.status_code == 200
    assert response.json()["broker"]["transport"] == "redis"


def test_database_errors_are_a_503(viewer_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> dict[str, Any]:
        raise OperationalError(
            'connection to server at "db" (10.0.0.5), port 5432 failed: Connection refused\n'
            "\tIs the server running on that host and accepting TCP/IP connections?"
        )

    monkeypatch.setitem(probes.CHECKS, "database", broken)
    assert Client().get(URL).json()["database"] == {"ok": False}
    response = viewer_client.get(URL)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["database"]["ok"] is False
    assert body["database"]["error"].startswith("OperationalError: connection to server")
    assert "\n" not in body["database"]["error"]
    assert body["sync"] == {"error": "no database"}


def test_a_check_that_hangs_is_cut_short(
    viewer_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It hangs until the test is over (a minute at most): an answer that
    # waited for it could not come within the bound below.
    over = threading.Event()

    def hangs() -> dict[str, Any]:
        over.wait(60)
        return {}

    monkeypatch.setitem(probes.CHECKS, "database", hangs)
    monkeypatch.setattr(probes, "CHECK_TIMEOUT", 0.5)
    started = time.monotonic()
    try:
        response = viewer_client.get(URL)
        took = time.monotonic() - started
    finally:
        over.set()
    assert took < 0.5 + SLACK
    assert response.status_code == 503
    # The deadline cut it short (what the code decided), not the check ending.
    assert response.json()["database"] == {"ok": False, "error": "no answer within 0.5 s"}


def test_a_cache_that_is_down_is_reported_but_not_fatal(
    viewer_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down() -> dict[str, Any]:
        raise ConnectionError("Error 111 connecting to redis://:pw@10.0.0.9:6379/0")

    monkeypatch.setitem(probes.CHECKS, "cache", down)
    # Signed out: not the backend, nor the address it could not reach.
    signed_out = Client().get(URL)
    assert signed_out.status_code == 200
    assert signed_out.json()["cache"] == {"ok": False}
    for detail in ("10.0.0.9", "redis", "Error 111", "Cache"):
        assert detail not in signed_out.content.decode()
    # Signed in: the error, without the credentials.
    response = viewer_client.get(URL)
    assert response.status_code == 200
    body = response.json()
    assert body["cache"]["ok"] is False
    assert "pw@" not in body["cache"]["error"]
    assert "redis://***@10.0.0.9:6379/0" in body["cache"]["error"]


def test_static_files_not_collected_are_a_503_that_says_so(
    viewer_client: Client, settings: Any, tmp_path: Path
) -> None:
    """DEBUG off serves the hashed names of collectstatic's manifest: without
    it every page is a 500, and /healthz must not say ready."""
    settings.STATIC_ROOT = tmp_path / "static"
    settings.STATIC_ROOT.mkdir()
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
    }
    response = viewer_client.get(URL)
    body = response.json()
    assert response.status_code == 503, body
    assert body["static"]["ok"] is False
    assert "the static files are not collected" in body["static"]["error"]
    assert "collectstatic" in body["static"]["error"]
    assert Client().get(URL).json() == {
        "status": "fail",
        "message": "Not ready: the static check failed.",
        "database": {"ok": True},
        "broker": {"ok": True},
        "cache": {"ok": True},
        "static": {"ok": False},
    }

    call_command("collectstatic", interactive=False, verbosity=0)
    # The storage reads the manifest when the process starts: as a restart,
    # settings anew make a new storage.
    settings.STORAGES = dict(settings.STORAGES)
    response = viewer_client.get(URL)
    assert response.status_code == 200, response.json()
    assert response.json()["static"]["files"] > 0
