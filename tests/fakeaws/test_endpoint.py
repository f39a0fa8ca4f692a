"""fakeaws: the test endpoint must behave like AWS where the sync depends on it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.helpers import LONG_WAIT, ORDER_PIPELINE, PASS, wait_until_finished

pytestmark = pytest.mark.django_db


@pytest.fixture
def finished(make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any) -> str:
    arn = start(make_state_machine("orders", ORDER_PIPELINE), "o-1", {"items": [1, 2, 3]})
    wait_until_finished(sfn, [arn])
    return arn


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_history_pages_by_max_results_and_next_token_in_both_orders(
    finished: str, sfn: Any
) -> None:
    everything = sfn.get_execution_history(executionArn=finished, maxResults=1000)["events"]
    assert len(everything) > 10
    for reverse in (False, True):
        ids: list[int] = []
        kwargs: dict[str, Any] = {
            "executionArn": finished,
            "maxResults": 4,
            "reverseOrder": reverse,
        }
        while True:
            page = sfn.get_execution_history(**kwargs)
            assert len(page["events"]) <= 4
            ids.extend(e["id"] for e in page["events"])
            if "nextToken" not in page:
                break
            kwargs["nextToken"] = page["nextToken"]
        expected = [e["id"] for e in everything]
        assert ids == (expected[::-1] if reverse else expected)


def test_a_bad_next_token_is_invalid(finished: str, sfn: Any) -> None:
    with pytest.raises(ClientError) as raised:
        sfn.get_execution_history(executionArn=finished, nextToken="bm9wZQ==")
    assert _code(raised) == "InvalidToken"


def test_history_without_execution_data_drops_inputs_and_outputs(finished: str, sfn: Any) -> None:
    events = sfn.get_execution_history(executionArn=finished, includeExecutionData=False)["events"]
    for event in events:
        for key, value in event.items():
            if key.endswith("EventDetails"):
                assert "input" not in value
                assert "output" not in value


def test_stop_keeps_error_and_cause_and_refuses_a_finished_execution(
    make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    arn = start(make_state_machine("nightly", LONG_WAIT), "n-1")
    answer = sfn.stop_execution(executionArn=arn, error="Oncall", cause="runaway")
    assert answer["stopDate"]
    described = sfn.describe_execution(executionArn=arn)
    assert (described["status"], described["error"], described["cause"]) == (
        "ABORTED",
        "Oncall",
        "runaway",
    )
    aborted = sfn.get_execution_history(executionArn=arn, reverseOrder=True, maxResults=1)[
        "events"
    ][0]
    assert aborted["executionAbortedEventDetails"] == {"error": "Oncall", "cause": "runaway"}
    with pytest.raises(ClientError) as raised:
        sfn.stop_execution(executionArn=arn)
    assert _code(raised) == "ValidationException"
    with pytest.raises(ClientError) as too_long:
        sfn.stop_execution(executionArn=arn, error="e" * 257)
    assert _code(too_long) == "ValidationException"


def test_quotas_throttle_like_aws_and_refill(
    fake_aws: Any, make_state_machine: Callable[..., str]
) -> None:
    make_state_machine("hello", PASS)
    fake_aws.app.configure(quotas={"ListStateMachines": [2, 4]})
    # No retries: botocore would otherwise hide the throttle by waiting it out.
    client = boto3.client(
        "stepfunctions",
        region_name="us-east-1",
        endpoint_url=fake_aws.url,
        config=Config(retries={"total_max_attempts": 1}),
    )
    codes = []
    for _ in range(4):
        try:
            client.list_state_machines()
            codes.append("ok")
        except ClientError as exc:
            codes.append(exc.response["Error"]["Code"])
    assert codes[:2] == ["ok", "ok"]
    assert "ThrottlingException" in codes[2:]
    time.sleep(0.6)  # 4 tokens a second: two are back
    client.list_state_machines()
    counted = fake_aws.post("/fakeaws/calls", {})
    assert counted["throttled"]["ListStateMachines"] >= 1
    assert counted["calls"]["ListStateMachines"] == 5


def test_executions_younger_than_the_lag_are_unknown_to_describe(
    fake_aws: Any, make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    arn = start(make_state_machine("hello", PASS), "h-1")
    fake_aws.app.configure(faults={"describe_lag_seconds": 60})
    with pytest.raises(ClientError) as raised:
        sfn.describe_execution(executionArn=arn)
    assert _code(raised) == "ExecutionDoesNotExist"
    listed = sfn.list_executions(
        stateMachineArn=arn.replace(":execution:", ":stateMachine:").rsplit(":", 1)[0]
    )
    assert [e["executionArn"] for e in listed["executions"]] == [arn]
