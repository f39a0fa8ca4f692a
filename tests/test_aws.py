"""executions/aws.py: errors mapped to a few types, every attempt counted and paid for."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from executions import aws, budget
from tests.helpers import LONG_WAIT, PASS, wait_until_finished

pytestmark = pytest.mark.django_db

UNKNOWN = "arn:aws:states:us-east-1:123456789012:execution:nope:never"


def test_an_unknown_execution_is_not_found(fake_aws: Any) -> None:
    with pytest.raises(aws.NotFound) as raised:
        aws.describe_execution(UNKNOWN)
    assert raised.value.code == "ExecutionDoesNotExist"
    assert raised.value.operation == "DescribeExecution"


def test_a_malformed_arn_is_invalid(fake_aws: Any) -> None:
    with pytest.raises(aws.InvalidArn):
        aws.describe_execution("arn:aws:states:us-east-1:123456789012:garbage")


def test_connection_refused_is_unavailable_and_quick(settings: Any) -> None:
    settings.SFNUI_AWS_ENDPOINT_URL = "http://127.0.0.1:9"
    started = time.monotonic()
    with pytest.raises(aws.Unavailable) as raised:
        aws.describe_execution(UNKNOWN)
    assert "unreachable" in raised.value.message
    assert time.monotonic() - started < 10


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers: AWS hanging."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_a_hanging_endpoint_times_out_as_unavailable(settings: Any, silent_server: str) -> None:
    settings.SFNUI_AWS_ENDPOINT_URL = silent_server
    settings.SFNUI_AWS_READ_TIMEOUT = 0.5
    settings.SFNUI_AWS_MAX_ATTEMPTS = 1
    started = time.monotonic()
    with pytest.raises(aws.Unavailable):
        aws.describe_execution(UNKNOWN)
    assert time.monotonic() - started < 5


def test_throttling_after_the_retries_is_throttled_and_every_attempt_is_counted(
    fake_aws: Any, settings: Any
) -> None:
    settings.SFNUI_AWS_MAX_ATTEMPTS = 3
    fake_aws.app.configure(faults={"throttle_for_seconds": 60})
    with aws.count_calls() as calls, pytest.raises(aws.Throttled) as raised:
        list(aws.list_state_machines("us-east-1"))
    assert raised.value.code == "ThrottlingException"
    assert calls["ListStateMachines"] == 3
    assert fake_aws.post("/fakeaws/calls", {})["throttled"] == {"ListStateMachines": 3}


def test_an_aws_throttle_empties_our_bucket_so_every_process_slows_down(
    fake_aws: Any, settings: Any
) -> None:
    settings.SFNUI_AWS_MAX_ATTEMPTS = 1
    settings.SFNUI_API_QUOTAS = {"ListStateMachines": (100, 5)}
    fake_aws.app.configure(faults={"throttle_for_seconds": 60})
    with pytest.raises(aws.Throttled):
        list(aws.list_state_machines("us-east-1"))
    tokens, capacity = budget.level("us-east-1", "ListStateMachines")
    assert capacity == 50
    assert tokens < 0


def test_count_calls_nests_and_counts_per_operation(
    fake_aws: Any, make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    arn = start(make_state_machine("hello", PASS), "hello-1")
    wait_until_finished(sfn, [arn])
    before = aws.total_calls()
    with aws.count_calls() as outer:
        aws.describe_execution(arn)
        with aws.count_calls() as inner:
            list(aws.execution_history(arn))
    assert inner == {"GetExecutionHistory": 1}
    assert outer == {"DescribeExecution": 1, "GetExecutionHistory": 1}
    after = aws.total_calls()
    assert after["DescribeExecution"] - before["DescribeExecution"] == 1


def test_history_pages_come_newest_first_with_next_tokens(
    fake_aws: Any, make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    arn = start(make_state_machine("hello", PASS), "hello-1")
    wait_until_finished(sfn, [arn])
    pages = list(aws.execution_history(arn, page_size=2))
    ids = [event["id"] for page in pages for event in page]
    assert ids == sorted(ids, reverse=True)
    assert len(pages) == -(-len(ids) // 2)
    assert aws.utc(pages[0][0]["timestamp"]).tzinfo is not None


def test_stopping_a_finished_execution_is_already_finished(
    fake_aws: Any, make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    arn = start(make_state_machine("hello", PASS), "hello-1")
    wait_until_finished(sfn, [arn])
    with pytest.raises(aws.AlreadyFinished):
        aws.stop_execution(arn, error="x", cause="y")


def test_stopping_sends_error_and_cause(
    fake_aws: Any, make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    arn = start(make_state_machine("nightly", LONG_WAIT), "nightly-1")
    answer = aws.stop_execution(arn, error="Oncall", cause="runaway job")
    assert answer["stopDate"] is not None
    d = sfn.describe_execution(executionArn=arn)
    assert (d["status"], d["error"], d["cause"]) == ("ABORTED", "Oncall", "runaway job")


def test_a_spent_budget_becomes_throttled_instead_of_a_long_wait(
    fake_aws: Any, settings: Any
) -> None:
    settings.SFNUI_API_SHARE = 1.0
    settings.SFNUI_API_QUOTAS = {"ListStateMachines": (1, 0.01)}
    settings.SFNUI_API_MAX_WAIT = 0.5
    list(aws.list_state_machines("us-east-1"))
    with aws.count_calls() as calls, pytest.raises(aws.Throttled) as raised:
        list(aws.list_state_machines("us-east-1"))
    assert raised.value.code == "BudgetExhausted"
    assert calls["ListStateMachines"] == 0  # nothing was sent
