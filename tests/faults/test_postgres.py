"""Fault 6: the database gone (restarted, unreachable), too slow (a statement
timeout), or out of connections (a role's connection limit): every page
answers 503 with a message that says so and Retry-After, never a 500, and
answers again once the database is back.

The first tests make each failure happen to the queries of one request, in
this process (Django's `execute_wrapper`, on either database). The others
run the web server (gunicorn) on a PostgreSQL database and a role of this
module's own, through a TCP proxy that the test cuts (the closest to a
restart that leaves the machine's PostgreSQL, which other tests use, alone):
in the SQLite run as well; a CI run without PostgreSQL fails.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import psycopg
import pytest
from django.contrib.auth.hashers import make_password
from django.db import ProgrammingError, connection
from django.db.utils import OperationalError
from django.test import Client

from tests.faults.test_database import postgres  # noqa: F401 (a fixture)
from tests.support.tcp_proxy import TcpProxy
from tests.support.workers import Processes, WebServer

GONE = "The database is not answering; try again in a few seconds."
SLOW = "The database did not answer in time"


def failing(
    error: Exception, only: str = ""
) -> Callable[[Callable[..., Any], str, Any, bool, dict[str, Any]], Any]:
    """An execute_wrapper: every query (or each that names `only`) fails with
    `error`, as Django raises it (its own class, the driver's as the cause)."""

    def wrapper(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
    ) -> Any:
        if only in sql:
            raise OperationalError(*error.args) from error
        return execute(sql, params, many, context)

    return wrapper


@pytest.mark.django_db
def test_a_page_answers_503_when_the_database_refuses_connections(viewer_client: Client) -> None:
    refused = psycopg.OperationalError('connection failed: connection to server at "127.0.0.1"')
    with connection.execute_wrapper(failing(refused)):
        response = viewer_client.get("/executions/")
    assert response.status_code == 503, response.content[:500]
    page = response.content.decode()
    assert GONE in page
    assert response["Retry-After"] == "5"
    assert "no-store" in response["Cache-Control"]
    assert "127.0.0.1" not in page  # the database's address stays in the log

    # The database back, the same session goes on.
    assert viewer_client.get("/executions/").status_code == 200


@pytest.mark.django_db
def test_the_api_answers_503_as_json(viewer_client: Client) -> None:
    ended = psycopg.errors.AdminShutdown("terminating connection due to administrator command")
    with connection.execute_wrapper(failing(ended)):
        response = viewer_client.get("/api/executions/")
    assert response.status_code == 503
    assert response.json() == {"error": "Database unavailable", "message": GONE}
    assert response["Retry-After"] == "5"


@pytest.mark.django_db
def test_a_query_of_the_view_failing_is_503(viewer_client: Client) -> None:
    """The session and the user load, then the page's own query fails."""
    full = psycopg.OperationalError("FATAL: too many connections for role")
    with connection.execute_wrapper(failing(full, only="executions_execution")):
        response = viewer_client.get("/executions/")
    assert response.status_code == 503, response.content[:500]
    assert GONE in response.content.decode()


@pytest.mark.django_db
def test_the_drivers_own_error_is_503_too(viewer_client: Client) -> None:
    """Closing a server-side cursor (QuerySet.iterator() on PostgreSQL) happens
    outside Django's error wrapper: psycopg's own exception reaches the view."""

    def raw(execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        if "executions_execution" in sql:
            raise psycopg.OperationalError("consuming input failed: server closed the connection")
        return execute(sql, *args)

    with connection.execute_wrapper(raw):
        response = viewer_client.get("/executions/")
    assert response.status_code == 503, response.content[:500]
    assert GONE in response.content.decode()


@pytest.mark.django_db
def test_a_statement_timeout_on_a_page_is_503(viewer_client: Client) -> None:
    slow = psycopg.errors.QueryCanceled("canceling statement due to statement timeout")
    with connection.execute_wrapper(failing(slow, only="executions_execution")):
        response = viewer_client.get("/executions/")
    assert response.status_code == 503, response.content[:500]
    assert SLOW in response.content.decode()
    assert response["Retry-After"] == "5"


@pytest.mark.django_db
def test_other_database_errors_are_not_called_an_outage(viewer_client: Client) -> None:
    """A bug (a missing table, bad SQL) stays a 500: no "try again" for it."""

    def broken(execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        if "executions_execution" in sql:
            raise ProgrammingError('relation "executions_execution" does not exist')
        return execute(sql, *args)

    viewer_client.raise_request_exception = False
    with connection.execute_wrapper(broken):
        response = viewer_client.get("/executions/")
    assert response.status_code == 500


# --- A real web server on PostgreSQL, behind a proxy ------------------------------------------


@dataclass
class Database:
    url: str  # as the web server reaches it: through the proxy, as the role
    direct: str  # the role's, without the proxy
    admin: str  # the database's, as the superuser
    role: str
    proxy: TcpProxy


@pytest.fixture(scope="module")
def database(request: pytest.FixtureRequest) -> Iterator[Database]:
    """The module's migrated database (test_faults_database's fixture), used
    by a role of our own (its connection limit is ours to change), and a
    proxy in front of the server."""
    server_url: str = request.getfixturevalue("postgres")
    role, password = f"sfnui_pg_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    server = urlparse(server_url)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'")
        conn.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"')
        conn.execute(f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
        conn.execute(
            "INSERT INTO auth_user (username, password, is_superuser, is_staff, is_active,"
            " first_name, last_name, email, date_joined)"
            " VALUES ('viewer', %s, false, false, true, '', '', '', now())",
            (make_password("viewer-pass-123"),),
        )
    proxy = TcpProxy((server.hostname or "127.0.0.1", server.port or 5432))
    as_role = server._replace(netloc=f"{role}:{password}@{server.hostname}:{server.port or 5432}")
    try:
        yield Database(
            url=as_role._replace(netloc=f"{role}:{password}@127.0.0.1:{proxy.port}").geturl(),
            direct=as_role.geturl(),
            admin=server_url,
            role=role,
            proxy=proxy,
        )
    finally:
        proxy.close()
        with psycopg.connect(server_url, autocommit=True) as conn:
            terminate_role(conn, role)
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


@pytest.fixture(scope="module")
def web(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """gunicorn on that database, signed in; a statement may take 1 s."""
    tmp = tmp_path_factory.mktemp("pg-web")
    with Processes(tmp) as processes:
        server = processes.web(
            DATABASE_URL=database.url,
            REDIS_URL="",
            SFNUI_VAR_DIR=str(tmp / "var"),
            SFNUI_DB_STATEMENT_TIMEOUT="1",
        )
        server.sign_in("viewer", "viewer-pass-123")
        yield server


@pytest.fixture
def healthy(database: Database, web: WebServer) -> Iterator[None]:
    """The database reachable and the page answering before and after a test."""
    database.proxy.restore()
    assert web.get("/executions/").status == 200
    yield
    database.proxy.restore()
    with psycopg.connect(database.admin, autocommit=True) as conn:
        conn.execute(f'ALTER ROLE "{database.role}" CONNECTION LIMIT -1')
    assert answered(web, "/executions/", 200)


def answered(web: WebServer, path: str, status: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while web.get(path).status != status:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def terminate(database: Database) -> None:
    """Every connection of the role ends, as at a restart."""
    with psycopg.connect(database.admin, autocommit=True) as conn:
        terminate_role(conn, database.role)


def terminate_role(conn: psycopg.Connection[Any], role: str) -> None:
    """pg_terminate_backend, and wait until the backends are gone (it only
    signals them)."""
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
    )
    deadline = time.monotonic() + 10
    while conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (role,)
    ).fetchone() != (0,):
        assert time.monotonic() < deadline, f"connections of {role} still open"
        time.sleep(0.02)


@pytest.mark.usefixtures("healthy")
def test_a_restarted_database_is_a_503_then_reconnected(database: Database, web: WebServer) -> None:
    database.proxy.cut()
    for path in ("/executions/", "/state-machines/", "/sync/"):
        response = web.get(path, timeout=10)
        assert response.status == 503, (path, response.status, response.text[:1000])
        assert GONE in response.text
        assert response.headers["Retry-After"] == "5"
        assert response.seconds < 5, (path, response.seconds)
    api = web.get("/api/executions/", timeout=10)
    assert api.status == 503, api.text[:1000]
    assert GONE in api.text

    database.proxy.restore()
    # The connection the server kept was cut: it checks, and opens a new one.
    assert web.get("/executions/").status == 200

    # Ended from the server's side (pg_terminate_backend, as at a restart).
    terminate(database)
    assert web.get("/executions/").status == 200


@pytest.mark.usefixtures("healthy")
def test_a_statement_timeout_is_a_503(database: Database, web: WebServer) -> None:
    """A migration holds the executions table (ACCESS EXCLUSIVE, reads wait):
    the page gives up after SFNUI_DB_STATEMENT_TIMEOUT (1 s here)."""
    with psycopg.connect(database.admin) as locker:
        locker.execute("SET LOCAL idle_in_transaction_session_timeout = '1min'")
        locker.execute("LOCK TABLE executions_execution IN ACCESS EXCLUSIVE MODE")
        response = web.get("/executions/", timeout=20)
        locker.rollback()
    assert response.status == 503, (response.status, response.text[:1000])
    assert SLOW in response.text
    assert 1 <= response.seconds < 8, response.seconds


@pytest.mark.usefixtures("healthy")
def test_a_full_connection_limit_is_a_503(database: Database, web: WebServer) -> None:
    """The role may hold one connection, and something else holds it."""
    with psycopg.connect(database.admin, autocommit=True) as conn:
        conn.execute(f'ALTER ROLE "{database.role}" CONNECTION LIMIT 1')
    terminate(database)
    with psycopg.connect(database.direct) as holder:
        holder.execute("SELECT 1")
        response = web.get("/executions/", timeout=10)
        assert response.status == 503, (response.status, response.text[:1000])
        assert GONE in response.text
        assert response.seconds < 5
    with contextlib.suppress(psycopg.Error):
        holder.close()
    # A connection free again: the next page has it.
    assert answered(web, "/executions/", 200)
