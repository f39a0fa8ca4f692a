from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import boto3
import pytest
from django.core.cache import cache

# Never real AWS from the tests: fake credentials, and every client points at
# the fake endpoint (see the `fake_aws` fixture).
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)
# pytest-django's live_server runs in a thread next to async-aware code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

from executions import aws, history
from fakeaws import FakeAwsServer

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/sfn"
# Plenty of budget, so that tests of anything else never wait for tokens.
UNLIMITED = {
    op: (1e6, 1e6)
    for op in (
        "ListStateMachines",
        "DescribeStateMachine",
        "ListExecutions",
        "DescribeExecution",
        "GetExecutionHistory",
        "StopExecution",
    )
}


def _patient_flush() -> None:
    """The flush after each transactional test, made to survive the real
    worker a journey keeps running (tests/e2e): the worker refills the fresh
    database while it is flushed, so on PostgreSQL the TRUNCATE can wait on
    its transaction past the web processes' statement timeout (set on every
    connection of this process once a test client has served a page), or meet
    it in a deadlock. Either failed CI once: the flush gave up and the next
    test found the last one's users. The flush now gets a minute of its own
    and is tried again (up to five times) when PostgreSQL gave it up for a
    deadlock or a timeout; any other error is raised as before."""
    from django.db import OperationalError
    from django.db.backends.base.operations import BaseDatabaseOperations

    flush = BaseDatabaseOperations.execute_sql_flush
    retried = {"40P01", "55P03", "57014"}  # deadlock, lock timeout, statement timeout

    def execute_sql_flush(self: BaseDatabaseOperations, sql_list: Iterable[str]) -> None:
        sql_list = list(sql_list)
        if self.connection.vendor == "postgresql":
            sql_list = ["SET LOCAL statement_timeout = '60s'", *sql_list]
        for attempt in range(5):
            try:
                flush(self, sql_list)
                return
            except OperationalError as exc:
                sqlstate = getattr(exc.__cause__, "sqlstate", None)
                if sqlstate not in retried or attempt == 4:
                    raise

    BaseDatabaseOperations.execute_sql_flush = execute_sql_flush  # type: ignore[method-assign]


_patient_flush()


@pytest.fixture(scope="session")
def fake_aws_server() -> Iterator[FakeAwsServer]:
    with FakeAwsServer() as server:
        yield server


@pytest.fixture
def fake_aws(fake_aws_server: FakeAwsServer, settings: Any) -> FakeAwsServer:
    """A clean fake Step Functions endpoint (moto in execute mode behind the
    AWS-faithful layer), with the app pointed at it."""
    fake_aws_server.reset()
    # moto forgot the roles it let us assume: so do we.
    aws.forget_clients()
    settings.SFNUI_AWS_ENDPOINT_URL = fake_aws_server.url
    settings.SFNUI_REGIONS = [REGION]
    return fake_aws_server


_DB_FIXTURES = {
    "db",
    "transactional_db",
    "django_db_reset_sequences",
    "django_db_serialized_rollback",
}


@pytest.fixture(autouse=True)
def _isolated(request: pytest.FixtureRequest, settings: Any) -> None:
    # Locks and budgets live in the shared cache, which outlives the test
    # database's rollback (and, with Redis, the test session). Without Redis
    # the cache is a table of the test database, which exists only for tests
    # that use the database: never clear the real one.
    uses_db = bool(request.node.get_closest_marker("django_db")) or bool(
        _DB_FIXTURES & set(request.fixturenames)
    )
    if settings.REDIS_URL:
        cache.clear()
    elif uses_db:
        request.getfixturevalue("django_db_setup")
        with request.getfixturevalue("django_db_blocker").unblock():
            cache.clear()
    # Timelines kept per process are keyed by rows a rolled-back test may
    # hand to the next one under the same primary key.
    history.forget_drawn()
    settings.SFNUI_API_QUOTAS = dict(UNLIMITED)
    settings.SFNUI_AWS_MAX_ATTEMPTS = 2
    settings.SFNUI_AWS_ENDPOINT_URL = "http://127.0.0.1:9"  # nothing listens: no real AWS


@pytest.fixture
def sfn(fake_aws: FakeAwsServer) -> Any:
    """A boto3 client on the fake endpoint, to create what the tests sync."""
    return boto3.client("stepfunctions", region_name=REGION, endpoint_url=fake_aws.url)


@pytest.fixture
def make_state_machine(sfn: Any) -> Callable[..., str]:
    def make(name: str, definition: dict[str, Any]) -> str:
        arn: str = sfn.create_state_machine(
            name=name, definition=json.dumps(definition), roleArn=ROLE
        )["stateMachineArn"]
        return arn

    return make


@pytest.fixture
def start(sfn: Any) -> Callable[..., str]:
    def start(state_machine_arn: str, name: str, payload: dict[str, Any] | None = None) -> str:
        arn: str = sfn.start_execution(
            stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload or {})
        )["executionArn"]
        return arn

    return start


@pytest.fixture
def user(django_user_model: Any) -> Any:
    """A signed-in viewer: can see everything, cannot stop."""
    return django_user_model.objects.create_user(username="viewer", password="viewer-pass-123")


@pytest.fixture
def operator(django_user_model: Any) -> Any:
    """A user with the permission executions.stop_execution."""
    from django.contrib.auth.models import Permission

    person = django_user_model.objects.create_user(username="oncall", password="oncall-pass-123")
    person.user_permissions.add(Permission.objects.get(codename="stop_execution"))
    return person


@pytest.fixture
def viewer_client(client: Any, user: Any) -> Any:
    client.force_login(user)
    return client


@pytest.fixture
def operator_client(client: Any, operator: Any) -> Any:
    client.force_login(operator)
    return client
