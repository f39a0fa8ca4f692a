"""executions/aws.py: errors mapped to a few types, every attempt counted and paid for."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from executions import aws, budget
from tests.support.aws_faults import refused_url, silent
from tests.support.helpers import LONG_WAIT, PASS, wait_until_finished

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


# --- Sent or not, and the deadlines (issue 10, items 4, 5 and 9) ------------------------


def test_a_refused_connection_is_unavailable_and_nothing_was_sent(settings: Any) -> None:
    settings.SFNUI_AWS_ENDPOINT_URL = refused_url()
    with pytest.raises(aws.Unavailable) as raised:
        aws.stop_execution(UNKNOWN)
    assert not isinstance(raised.value, aws.NoAnswer)
    assert raised.value.sent is False


def test_a_request_that_arrived_and_got_no_answer_may_have_been_acted_on(settings: Any) -> None:
    settings.SFNUI_AWS_READ_TIMEOUT = 0.5
    with silent() as endpoint:
        settings.SFNUI_AWS_ENDPOINT_URL = endpoint.url
        with pytest.raises(aws.NoAnswer) as raised:
            aws.stop_execution(UNKNOWN)
    assert raised.value.sent is True
    assert raised.value.code == "ReadTimeoutError"
    # Both attempts arrived whole: AWS could have acted on either.
    assert endpoint.arrived["StopExecution"] == 2


def test_one_attempt_sent_then_a_refused_retry_is_still_no_answer(settings: Any) -> None:
    """The last attempt failed before sending; the first one may have stopped it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    arrived, release = threading.Event(), threading.Event()

    def serve_once() -> None:
        conn, _ = listener.accept()
        listener.close()  # the retry finds nothing listening
        conn.recv(65536)
        arrived.set()
        release.wait(10)
        conn.close()

    thread = threading.Thread(target=serve_once, daemon=True)
    thread.start()
    settings.SFNUI_AWS_ENDPOINT_URL = f"http://127.0.0.1:{listener.getsockname()[1]}"
    settings.SFNUI_AWS_READ_TIMEOUT = 0.5
    try:
        with pytest.raises(aws.NoAnswer) as raised:
            aws.stop_execution(UNKNOWN)
    finally:
        release.set()
        thread.join(5)
    assert arrived.is_set()
    assert raised.value.code == "EndpointConnectionError"  # what the last attempt met


def test_the_endpoint_url_is_in_the_log_and_not_in_the_message(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    url = refused_url()
    settings.SFNUI_AWS_ENDPOINT_URL = url
    with pytest.raises(aws.Unavailable) as raised:
        aws.describe_execution(UNKNOWN)
    assert url.removeprefix("http://") not in raised.value.message
    assert "endpoint URL" in raised.value.message  # what botocore said, minus where
    assert url in caplog.text


@pytest.mark.parametrize("kind", ["page", "call"])
def test_a_deadline_holds_for_all_attempts_together(settings: Any, kind: str) -> None:
    """Without it: 3 attempts x 10 s read timeout."""
    settings.SFNUI_AWS_READ_TIMEOUT = 10.0
    settings.SFNUI_AWS_MAX_ATTEMPTS = 3
    settings.SFNUI_AWS_PAGE_DEADLINE = 1.5
    settings.SFNUI_AWS_CALL_DEADLINE = 1.5 if kind == "call" else 20.0

    def within() -> contextlib.AbstractContextManager[None]:
        return aws.page_deadline() if kind == "page" else contextlib.nullcontext()

    with silent() as endpoint:
        settings.SFNUI_AWS_ENDPOINT_URL = endpoint.url
        with within():
            aws.client("us-east-1")  # built, as by an earlier page: not the time measured
        started = time.monotonic()
        with within(), pytest.raises(aws.NoAnswer) as raised:
            aws.describe_execution(UNKNOWN)
        elapsed = time.monotonic() - started
        sent = sum(endpoint.arrived.values())
    # The deadline is for the attempts together: the first one had all of it,
    # and no second one went out (a deadline per attempt would send three).
    assert sent == 1, endpoint.arrived
    # Nowhere near one attempt's read timeout (10 s), with room for a loaded machine.
    assert elapsed < 1.5 + 5.0, elapsed
    assert raised.value.deadline == 1.5
    assert "did not answer within 1.5 s" in raised.value.message


def test_no_attempt_starts_once_the_deadline_has_passed(fake_aws: Any, settings: Any) -> None:
    with aws.count_calls() as calls, aws.deadline(0.0), pytest.raises(aws.Unavailable) as raised:
        aws.describe_execution(UNKNOWN)
    assert raised.value.sent is False
    assert calls == {}


def test_time_spent_waiting_for_budget_comes_off_the_wait_for_the_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def slow_budget(*args: Any, **kwargs: Any) -> float:
        time.sleep(0.5)
        return 0.5

    monkeypatch.setattr(budget, "acquire", slow_budget)
    request = type("Request", (), {"context": {}})()
    with aws.deadline(3.0):
        aws._before_send(
            "default", "us-east-1", 0.2, 10.0, "before-send.sfn.DescribeExecution", request
        )
    # 3 s, less the half second of budget, less the time to connect.
    assert request.context["read_timeout"] <= 3.0 - 0.5 - 0.2


@pytest.mark.parametrize(
    "value",
    [
        1764842400,
        1764842400.123456,
        "1764842400",
        "1764842400.5",
        "20261204",
        "2026-12-04T10:00:00Z",
        "2026-12-04T10:00:00.123Z",
        "2026-12-04T12:00:00.123456+02:00",
        "2026-12-04T10:00:00",
        "2026-12-04 10:00:00.5",
        "Thu, 04 Dec 2026 10:00:00 GMT",
    ],
)
def test_timestamps_read_as_botocore_reads_them_in_utc(value: Any) -> None:
    import datetime as dt

    import botocore.utils

    parsed = aws.parse_timestamp(value)
    assert parsed == aws.utc(botocore.utils.parse_timestamp(value))
    assert parsed.tzinfo is dt.UTC


def test_the_clients_read_timestamps_with_that_parser(
    fake_aws: Any, make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    import datetime as dt

    arn = start(make_state_machine("ts", PASS), "ts-1")
    wait_until_finished(sfn, [arn])
    ours = aws.describe_execution(arn)
    theirs = sfn.describe_execution(executionArn=arn)
    assert ours["startDate"].tzinfo is dt.UTC
    assert ours["startDate"] == theirs["startDate"]
    assert ours["stopDate"] == theirs["stopDate"]
    ours_events = [e for page in aws.execution_history(arn) for e in page]
    theirs_events = sfn.get_execution_history(executionArn=arn, reverseOrder=True)["events"]
    assert [e["timestamp"] for e in ours_events] == [e["timestamp"] for e in theirs_events]
    assert all(e["timestamp"].tzinfo is dt.UTC for e in ours_events)
