"""The database locked against writers for longer than any page waits: a
migration, a script or the sync holding SQLite's write lock (one for the
whole file), or on PostgreSQL every table locked against writers. Pages
answer at once and skip the write they make on the side (marking a watched
execution due), sign-in says the database is busy, and /healthz says the
database cannot be written; nothing is left waiting for the lock."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import OperationalError, connection, connections
from django.db.migrations.recorder import MigrationRecorder
from django.test import Client
from django.utils import timezone

from executions.database import busy
from executions.models import Execution
from tests.support import factories

# The checks and the pages use connections of their own: the test's data
# must be committed, and the lock taken by another connection.
pytestmark = pytest.mark.django_db(transaction=True)

# Every answer comes within this long; the lock is held until the test lets go.
# The longest the code waits for the lock is sign-in's (busy.SIGN_IN_WAIT,
# then a 503); the rest is room for a loaded machine. What it guards against
# is waiting out SQLite's busy timeout (30 s) or PostgreSQL's lock queue.
WITHIN = busy.SIGN_IN_WAIT + 5.0


@contextmanager
def database_locked() -> Iterator[None]:
    """Another connection holds the write lock until the block ends."""
    if connection.vendor == "sqlite":
        locker = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None, timeout=5)
        try:
            locker.execute("BEGIN IMMEDIATE")
            yield
        finally:
            locker.close()  # rolls back
        return
    # PostgreSQL has no lock on the whole database: every table locked
    # against writers (reads go on) is the closest, as a long migration does.
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
    other = connections.create_connection("default")
    try:
        other.ensure_connection()
        raw: Any = other.connection
        raw.autocommit = False
        raw.execute("SET LOCAL idle_in_transaction_session_timeout = '2min'")
        quoted = ", ".join(connection.ops.quote_name(t) for t in tables)
        raw.execute(f"LOCK TABLE {quoted} IN EXCLUSIVE MODE")
        yield
    finally:
        other.close()  # rolls back


def running_not_synced_lately() -> Execution:
    later = timezone.now() + dt.timedelta(hours=1)
    return factories.execution_row(
        status="RUNNING",
        synced_at=timezone.now() - dt.timedelta(minutes=10),
        sync_due_at=later,
    )


def timed(call: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    started = time.monotonic()
    response = call(*args, **kwargs)
    return response, time.monotonic() - started


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/executions/{arn}/", {}),
        ("/executions/{arn}/", {"HTTP_HX_REQUEST": "true"}),
        ("/executions/{arn}/history/", {}),
        ("/executions/{arn}/stop/", {}),
        ("/api/executions/{arn}/", {}),
    ],
)
def test_pages_of_a_running_execution_answer_at_once_and_skip_the_sync_they_would_ask_for(
    operator_client: Client, path: str, headers: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    ex = running_not_synced_lately()
    url = path.format(arn=ex.arn)
    assert operator_client.get(url, **headers).status_code == 200  # templates compiled
    due = timezone.now() + dt.timedelta(hours=1)
    Execution.objects.filter(pk=ex.pk).update(sync_due_at=due)
    with database_locked():
        response, took = timed(operator_client.get, url, **headers)
        print(f"{url} {headers} with the database locked: {response.status_code} in {took:.2f} s")
        assert response.status_code == 200, response.content[:500]
        assert took < WITHIN
    ex.refresh_from_db()
    assert ex.sync_due_at == due, "the write was skipped, not half done"
    assert "database is busy: did not make" in caplog.text

    # The lock gone, the same page asks for the sync again.
    assert operator_client.get(url, **headers).status_code == 200
    ex.refresh_from_db()
    assert ex.sync_due_at is not None
    assert ex.sync_due_at <= timezone.now()


def test_the_connection_waits_as_long_as_before_after_a_skipped_write(
    operator_client: Client,
) -> None:
    """The short wait is for that one write: the page's connection is back
    to the configured wait afterwards (the sync, on the same connection in
    a worker, must keep queueing for the lock)."""
    ex = running_not_synced_lately()
    configured = _waits()
    if connection.vendor == "sqlite":
        assert int(configured[0]) >= 10_000
    with database_locked():
        assert operator_client.get(f"/executions/{ex.arn}/").status_code == 200
    assert _waits() == configured


def _waits() -> tuple[str, ...]:
    """How long this connection's statements wait: SQLite's busy timeout, or
    PostgreSQL's lock and statement timeouts."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA busy_timeout")
        else:
            cursor.execute(
                "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')"
            )
        return tuple(str(v) for v in cursor.fetchone())


@pytest.mark.parametrize("password", ["viewer-pass-123", "not-the-password"])
def test_sign_in_says_the_database_is_busy_within_seconds(
    client: Client, user: Any, password: str
) -> None:
    """Sign-in must write (the session, last_login, the failure count): it
    cannot skip them, so it says so quickly; a wrong password gets the same
    answer as the right one (no oracle while the lock lasts)."""
    client.get("/accounts/login/")
    form = {"username": "viewer", "password": password}
    with database_locked():
        response, took = timed(client.post, "/accounts/login/", form)
        print(f"sign-in with the database locked: {response.status_code} in {took:.2f} s")
        assert response.status_code == 503, response.content[:500]
        assert took < WITHIN
        page = response.content.decode()
        assert "The database is busy" in page
        assert "try again" in page
        assert response["Retry-After"]
    assert "_auth_user_id" not in client.session

    # The lock gone, signing in works again.
    response = client.post(
        "/accounts/login/", {"username": "viewer", "password": "viewer-pass-123"}
    )
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)


def test_healthz_says_the_database_cannot_be_written(viewer_client: Client) -> None:
    with database_locked():
        response, took = timed(viewer_client.get, "/healthz")
        print(f"/healthz with the database locked: {response.status_code} in {took:.2f} s")
        signed_out = Client().get("/healthz")
    body = response.json()
    assert response.status_code == 503, body
    assert took < WITHIN
    assert body["status"] == "fail"
    assert body["database"]["ok"] is False
    assert "the database can be read but cannot be written" in body["database"]["error"]
    assert "locked" in body["database"]["error"] or "timeout" in body["database"]["error"]
    assert signed_out.status_code == 503
    assert signed_out.json()["database"] == {"ok": False}

    # The lock gone, it is ready again, and the probe left nothing behind.
    assert viewer_client.get("/healthz").status_code == 200
    assert not MigrationRecorder.Migration.objects.filter(app="sfnui-healthz").exists()


def _ended_connection(seconds: float, using: str = "default") -> Any:
    """lock_wait on a connection that ended: it fails before its block."""

    @contextmanager
    def failing() -> Iterator[None]:
        raise OperationalError("the connection is closed")
        yield  # pragma: no cover

    return failing()


@pytest.mark.parametrize("body_fails", [False, True], ids=["body-goes-through", "body-fails"])
def test_a_best_effort_write_on_an_ended_connection_is_skipped_not_a_500(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, body_fails: bool
) -> None:
    # bench.pg_faults found "generator didn't yield" (a 500) here: the wait
    # could not even be set, and best_effort swallowed that before its yield.
    monkeypatch.setattr(busy, "lock_wait", _ended_connection)
    ran = []
    with busy.best_effort("mark it due"):
        ran.append(True)
        if body_fails:
            raise OperationalError("the connection is closed")
    assert ran == [True]
    assert "could not mark it due" in caplog.text


def test_a_best_effort_block_does_not_swallow_what_is_not_the_database() -> None:
    with pytest.raises(ValueError, match="a bug"), busy.best_effort("mark it due"):
        raise ValueError("a bug")
