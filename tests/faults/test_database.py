"""Fault 5: database errors, on PostgreSQL (in the SQLite run as well, on a
PostgreSQL database of this module's own; a CI run without PostgreSQL fails).

- A unique-constraint race: two worker processes sync the same state machines,
  executions and histories at the same moment, page by page (barriers), as
  two workers do when a lock expired. Each row ends up stored once and the
  cache equals AWS: the upserts resolve the race, nobody fails.
- A long transaction: another connection holds row locks on every execution,
  history event and state machine (an open transaction that UPDATEd them, as a
  migration, a stuck script or someone in psql would). Every page still
  answers within a second: reads never wait for row locks, and the one write
  a page makes (marking a watched execution due) skips a locked row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import psycopg
import pytest
from django.conf import settings as django_settings
from django.db import connection

from tests.support.helpers import (
    LONG_WAIT,
    PAYMENT,
    aws_events,
    aws_execution,
    counting_loop,
    wait_until_finished,
)
from tests.support.workers import Processes

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

DATA_TABLES = (
    "executions_historyevent",
    "executions_stoprequest",
    "executions_execution",
    "executions_syncrun",
    "executions_statemachine",
    "executions_apibucket",
)


def admin_url() -> str:
    """A PostgreSQL server to create a database on: the test database's, or
    SFNUI_TEST_POSTGRES_URL, or the local one CI starts."""
    if connection.vendor == "postgresql":
        db = connection.settings_dict
        user = db.get("USER") or "postgres"
        password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
        host = db.get("HOST") or "127.0.0.1"
        return f"postgres://{user}{password}@{host}:{db.get('PORT') or 5432}/postgres"
    return os.environ.get("SFNUI_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated PostgreSQL database of this module's own."""
    admin = admin_url()
    try:
        psycopg.connect(admin, connect_timeout=3, autocommit=True).close()
    except psycopg.OperationalError as exc:
        if os.environ.get("SFNUI_CI"):
            pytest.fail(f"PostgreSQL is required in CI for the database faults: {exc}")
        pytest.skip(f"no PostgreSQL at {urlparse(admin).hostname}: {exc}")
    name = f"test_sfnui_faults_{uuid.uuid4().hex[:8]}"
    url = urlparse(admin)._replace(path=f"/{name}").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    var = tmp_path_factory.mktemp("pg-var")
    try:
        for command in (["migrate", "--noinput"], ["createcachetable"]):
            subprocess.run(
                [sys.executable, "manage.py", *command],
                cwd=django_settings.BASE_DIR,
                env=child_env(url, var),
                check=True,
                capture_output=True,
                timeout=300,
            )
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def child_env(database_url: str, var: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SFNUI_VAR_DIR": str(var),
        "SFNUI_QUEUE": f"test-{uuid.uuid4().hex[:8]}",
        "DJANGO_DEBUG": "true",
        "SFNUI_LOG_LEVEL": "WARNING",
        "SFNUI_API_QUOTAS": ",".join(
            f"{op}=100000/100000"
            for op in (
                "ListStateMachines",
                "DescribeStateMachine",
                "ListExecutions",
                "DescribeExecution",
                "GetExecutionHistory",
                "StopExecution",
            )
        ),
        **extra,
    }
    env.pop("REDIS_URL", None)
    return env


def child(database_url: str, var: Path, *args: str, endpoint: str = "") -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.faults_child", *args],
        cwd=django_settings.BASE_DIR,
        env=child_env(database_url, var, SFNUI_AWS_ENDPOINT_URL=endpoint),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def result(proc: subprocess.Popen[bytes], timeout: float = 180) -> Any:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode(errors="replace")[-5000:]
    return json.loads(out)


@pytest.fixture
def pg(postgres: str, tmp_path: Path) -> Callable[..., Any]:
    """Empty data tables, and a way to run faults_child on them."""
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE")

    def run(*args: str, endpoint: str = "") -> Any:
        return result(child(postgres, tmp_path, *args, endpoint=endpoint))

    return run


def test_two_workers_storing_the_same_events_at_once_store_each_once(
    postgres: str,
    pg: Callable[..., Any],
    tmp_path: Path,
    fake_aws: Any,
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    sfn: Any,
) -> None:
    fake_aws.app.configure(faults={"page_limit": 200})
    loops = make_state_machine("loop", counting_loop(300))
    arns = [start(loops, f"loop-{i}", {"i": i}) for i in range(3)]
    arns.append(start(make_state_machine("payments", PAYMENT), "pay-1", {"amount": 3}))
    wait_until_finished(sfn, arns)

    barriers = tmp_path / "barriers"
    barriers.mkdir()
    workers = [
        child(postgres, tmp_path, "race", str(barriers), me, other, endpoint=fake_aws.url)
        for me, other in (("a", "b"), ("b", "a"))
    ]
    outcomes = [result(w) for w in workers]
    # Both fetched and wrote every page, in step.
    assert outcomes[0]["pages"] == outcomes[1]["pages"] >= 18, outcomes
    assert outcomes[0]["events"] == outcomes[1]["events"] > 3500, outcomes

    fake_aws.app.configure(faults={})
    cached = pg("dump")
    assert sorted(cached) == sorted(arns)
    for arn in arns:
        expected = json.loads(json.dumps(aws_execution(sfn, arn), default=_iso))
        assert cached[arn]["execution"] == expected, arn
        events = json.loads(json.dumps(aws_events(sfn, arn), default=_iso))
        assert cached[arn]["events"] == events, arn


def _iso(value: Any) -> str:
    return str(value.isoformat())


def test_pages_answer_while_another_transaction_holds_row_locks(
    postgres: str,
    pg: Callable[..., Any],
    tmp_path: Path,
    fake_aws: Any,
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    sfn: Any,
) -> None:
    done = start(make_state_machine("payments", PAYMENT), "pay-1", {"amount": 3})
    wait_until_finished(sfn, [done])
    running = start(make_state_machine("nightly", LONG_WAIT), "nightly-1")
    subprocess.run(
        [sys.executable, "manage.py", "sync"],
        cwd=django_settings.BASE_DIR,
        env=child_env(postgres, tmp_path, SFNUI_AWS_ENDPOINT_URL=fake_aws.url),
        check=True,
        capture_output=True,
        timeout=120,
    )
    pg("operator", "oncall", "oncall-pass-123")
    with Processes(tmp_path, endpoint=fake_aws.url) as processes:
        web = processes.web(
            DATABASE_URL=postgres, REDIS_URL="", SFNUI_VAR_DIR=str(tmp_path / "web")
        )
        web.sign_in("oncall", "oncall-pass-123")
        with psycopg.connect(postgres, autocommit=True) as conn:
            sm = conn.execute(
                "SELECT arn FROM executions_statemachine WHERE name = 'nightly'"
            ).fetchone()
        assert sm is not None
        pages = [
            "/executions/",
            *(f"/executions/{quote(arn, safe=':')}/" for arn in (done, running)),
            f"/executions/{quote(done, safe=':')}/history/",
            f"/executions/{quote(done, safe=':')}/history.json",
            f"/executions/{quote(running, safe=':')}/stop/",
            "/state-machines/",
            f"/state-machines/{quote(sm[0], safe=':')}/",
            "/sync/",
            "/audit/",
            "/api/executions/",
            f"/api/executions/{quote(running, safe=':')}/",
        ]
        for url in pages:  # warm up: templates compiled, connections open
            assert web.get(url).status == 200, url

        with psycopg.connect(postgres, autocommit=True) as conn:
            # As the sync leaves a running execution: synced a while ago, next
            # sync scheduled later. Whoever opens its page wants it sooner.
            conn.execute(
                "UPDATE executions_execution SET synced_at = now() - interval '1 minute',"
                " sync_due_at = now() + interval '1 hour' WHERE arn = %s",
                (running,),
            )
        locker = psycopg.connect(postgres)
        try:
            # An open transaction holding a lock on every row the pages read.
            locker.execute("SET LOCAL idle_in_transaction_session_timeout = '2min'")
            locker.execute("UPDATE executions_execution SET sync_error = sync_error")
            locker.execute("UPDATE executions_historyevent SET type = type")
            locker.execute("UPDATE executions_statemachine SET name = name")
            for url in pages:
                response = web.get(url, timeout=30)
                assert response.status == 200, (url, response.status, response.text[:2000])
                assert response.seconds < 1.0, (url, response.seconds)
            waiting = locker.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"
            ).fetchone()
            assert waiting == (0,)
        finally:
            locker.rollback()
            locker.close()
