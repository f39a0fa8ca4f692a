"""fakeaws.map_runs: simulated Distributed Map runs, and the endpoint's answers about them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from fakeaws.map_runs import MapRunError, MapRuns
from tests.support.helpers import LONG_WAIT

PARENT = "arn:aws:states:us-east-1:123456789012:execution:etl:run-1"


def items(n: int, seconds: float = 10.0, failing: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    return [{"seconds": seconds, "fail": i in failing} for i in range(n)]


def test_children_start_at_most_max_concurrency_at_a_time() -> None:
    runs = MapRuns()
    run = runs.create(PARENT, items(5, seconds=100), max_concurrency=2)
    d = runs.describe_map_run(run.arn)
    assert d["status"] == "RUNNING"
    assert d["itemCounts"]["running"] == 2
    assert d["itemCounts"]["pending"] == 3
    assert d["executionCounts"]["total"] == 2  # no execution yet for a pending item
    assert run.arn.startswith("arn:aws:states:us-east-1:123456789012:mapRun:etl/Map:")
    assert run.state_machine_arn == "arn:aws:states:us-east-1:123456789012:stateMachine:etl/Map"


def test_the_run_fails_when_failures_exceed_the_tolerated_percentage() -> None:
    runs = MapRuns()
    start = time.time() - 100
    # 10 items, 1 s each, all at once; 3 fail; 20 % tolerated (2 items).
    run = runs.create(
        PARENT, items(10, 1, failing=(1, 2, 3)), tolerated_failure_percentage=20, start=start
    )
    d = runs.describe_map_run(run.arn)
    assert d["status"] == "FAILED"
    assert d["itemCounts"]["failed"] == 3
    assert run.error == "States.ExceedToleratedFailureThreshold"


def test_failures_within_the_tolerance_let_it_succeed() -> None:
    runs = MapRuns()
    run = runs.create(
        PARENT,
        items(10, 1, failing=(1, 2)),
        tolerated_failure_count=2,
        start=time.time() - 100,
    )
    d = runs.describe_map_run(run.arn)
    assert d["status"] == "SUCCEEDED"
    assert (d["itemCounts"]["succeeded"], d["itemCounts"]["failed"]) == (8, 2)
    assert d["toleratedFailureCount"] == 2


def test_without_a_tolerance_the_first_failure_fails_the_run_and_aborts_the_rest() -> None:
    runs = MapRuns()
    run = runs.create(
        PARENT,
        [{"seconds": 1, "fail": True}, {"seconds": 50}, {"seconds": 50}],
        max_concurrency=2,
        start=time.time() - 10,
    )
    d = runs.describe_map_run(run.arn)
    assert d["status"] == "FAILED"
    counts = d["itemCounts"]
    assert (counts["failed"], counts["aborted"], counts["pending"]) == (1, 2, 0)
    assert d["executionCounts"]["aborted"] == 1  # the running one; the third never started


def test_update_map_run_lowers_the_concurrency_from_now_on() -> None:
    runs = MapRuns()
    run = runs.create(PARENT, items(10, seconds=100), max_concurrency=5)
    runs.update_map_run({"mapRunArn": run.arn, "maxConcurrency": 1})
    d = runs.describe_map_run(run.arn)
    assert d["maxConcurrency"] == 1
    # Running children finish; nothing new starts until fewer than 1 run.
    assert d["itemCounts"]["running"] == 5


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"maxConcurrency": -1}, "ValidationException"),
        ({"toleratedFailurePercentage": 100.5}, "ValidationException"),
        ({"toleratedFailureCount": -2}, "ValidationException"),
        ({}, "ValidationException"),
    ],
)
def test_update_map_run_refuses_what_aws_refuses(params: dict[str, Any], code: str) -> None:
    runs = MapRuns()
    run = runs.create(PARENT, items(2))
    with pytest.raises(MapRunError) as caught:
        runs.update_map_run({"mapRunArn": run.arn, **params})
    assert caught.value.code == code


def test_update_map_run_refuses_a_finished_run_and_unknown_arns() -> None:
    runs = MapRuns()
    run = runs.create(PARENT, items(1, 1), start=time.time() - 10)
    with pytest.raises(MapRunError, match="not RUNNING"):
        runs.update_map_run({"mapRunArn": run.arn, "maxConcurrency": 3})
    with pytest.raises(MapRunError) as unknown:
        runs.update_map_run({"mapRunArn": run.arn + "0", "maxConcurrency": 3})
    assert unknown.value.code == "ResourceNotFound"
    with pytest.raises(MapRunError) as malformed:
        runs.update_map_run({"mapRunArn": "nope", "maxConcurrency": 3})
    assert malformed.value.code == "InvalidArn"


def test_the_endpoint_serves_map_runs_children_and_the_parents_events(
    fake_aws: Any, sfn: Any, make_state_machine: Callable[..., str], start: Callable[..., str]
) -> None:
    parent = start(make_state_machine("etl", LONG_WAIT), "run-1")
    run = fake_aws.app.map_runs.create(
        parent,
        items(6, seconds=1, failing=(0,)) + items(2, seconds=300),
        label="Items",
        max_concurrency=8,
        tolerated_failure_count=3,
        start=time.time() - 5,
    )
    listed = sfn.list_map_runs(executionArn=parent)["mapRuns"]
    assert [m["mapRunArn"] for m in listed] == [run.arn]
    assert listed[0]["stateMachineArn"].endswith(":stateMachine:etl/Items")
    described = sfn.describe_map_run(mapRunArn=run.arn)
    assert described["status"] == "RUNNING"
    assert described["itemCounts"]["failed"] == 1

    children = sfn.list_executions(mapRunArn=run.arn)["executions"]
    assert len(children) == 8
    assert all(c["mapRunArn"] == run.arn for c in children)
    child = children[0]["executionArn"]
    assert ":execution:etl/Items:" in child
    failed = sfn.list_executions(mapRunArn=run.arn, statusFilter="FAILED")["executions"]
    assert len(failed) == 1
    paged = sfn.list_executions(mapRunArn=run.arn, maxResults=5)
    assert len(paged["executions"]) == 5
    assert paged["nextToken"]

    d = sfn.describe_execution(executionArn=failed[0]["executionArn"])
    assert (d["status"], d["mapRunArn"], d["redriveStatus"]) == (
        "FAILED",
        run.arn,
        "REDRIVABLE_BY_MAP_RUN",
    )
    history = sfn.get_execution_history(executionArn=failed[0]["executionArn"])["events"]
    assert [e["type"] for e in history] == ["ExecutionStarted", "ExecutionFailed"]

    parent_events = sfn.get_execution_history(executionArn=parent)["events"]
    started = [e for e in parent_events if e["type"] == "MapRunStarted"]
    assert started[0]["mapRunStartedEventDetails"]["mapRunArn"] == run.arn
    assert [e["id"] for e in parent_events] == list(range(1, len(parent_events) + 1))

    sfn.update_map_run(mapRunArn=run.arn, maxConcurrency=1)
    assert sfn.describe_map_run(mapRunArn=run.arn)["maxConcurrency"] == 1
    with pytest.raises(ClientError) as refused:
        sfn.describe_map_run(mapRunArn=run.arn[:-3] + "abc")
    assert refused.value.response["Error"]["Code"] == "ResourceNotFound"


def test_an_express_map_runs_children_have_no_history(
    fake_aws: Any, sfn: Any, make_state_machine: Callable[..., str], start: Callable[..., str]
) -> None:
    parent = start(make_state_machine("etl", LONG_WAIT), "run-1")
    run = fake_aws.app.map_runs.create(parent, items(1, 100), execution_type="EXPRESS")
    child = sfn.list_executions(mapRunArn=run.arn)["executions"][0]["executionArn"]
    assert sfn.describe_execution(executionArn=child)["status"] == "RUNNING"
    with pytest.raises(ClientError) as refused:
        sfn.get_execution_history(executionArn=child)
    assert refused.value.response["Error"]["Code"] == "InvalidArn"


def test_stopping_the_parent_aborts_its_map_run(
    fake_aws: Any, sfn: Any, make_state_machine: Callable[..., str], start: Callable[..., str]
) -> None:
    parent = start(make_state_machine("etl", LONG_WAIT), "run-1")
    run = fake_aws.app.map_runs.create(parent, items(3, 100))
    sfn.stop_execution(executionArn=parent)
    assert sfn.describe_map_run(mapRunArn=run.arn)["status"] == "ABORTED"
    types = [e["type"] for e in sfn.get_execution_history(executionArn=parent)["events"]]
    assert types[-2:] == ["MapRunAborted", "ExecutionAborted"]
