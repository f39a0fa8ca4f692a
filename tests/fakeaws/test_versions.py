"""fakeaws: versions and aliases as AWS has them, and the definition an execution ran."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ROLE
from tests.support.helpers import FAIL, PASS, wait_until_finished

pytestmark = pytest.mark.django_db


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


@pytest.fixture
def two_versions(make_state_machine: Callable[..., str], sfn: Any) -> tuple[str, str, str]:
    """A state machine with v1 (passes) and v2 (fails) published, today's text a third."""
    arn = make_state_machine("checkout", PASS)
    v1 = sfn.publish_state_machine_version(stateMachineArn=arn, description="first")
    sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(FAIL))
    v2 = sfn.publish_state_machine_version(stateMachineArn=arn, description="second")
    today = {"StartAt": "Today", "States": {"Today": {"Type": "Succeed"}}}
    sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(today))
    return arn, v1["stateMachineVersionArn"], v2["stateMachineVersionArn"]


def test_publishing_numbers_versions_and_is_idempotent_for_one_revision(
    make_state_machine: Callable[..., str], sfn: Any
) -> None:
    arn = make_state_machine("checkout", PASS)
    first = sfn.publish_state_machine_version(stateMachineArn=arn, description="first")
    again = sfn.publish_state_machine_version(stateMachineArn=arn)
    assert first["stateMachineVersionArn"] == f"{arn}:1"
    assert again["stateMachineVersionArn"] == f"{arn}:1"
    sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(FAIL))
    second = sfn.publish_state_machine_version(stateMachineArn=arn)
    assert second["stateMachineVersionArn"] == f"{arn}:2"
    described = sfn.describe_state_machine(stateMachineArn=f"{arn}:1")
    assert json.loads(described["definition"]) == PASS
    assert described["description"] == "first"


def test_publishing_refuses_a_stale_revision_and_unknown_machines(
    make_state_machine: Callable[..., str], sfn: Any
) -> None:
    arn = make_state_machine("checkout", PASS)
    with pytest.raises(ClientError) as raised:
        sfn.publish_state_machine_version(stateMachineArn=arn, revisionId="not-the-current-one")
    assert _code(raised) == "ConflictException"
    with pytest.raises(ClientError) as raised:
        sfn.publish_state_machine_version(stateMachineArn=f"{arn}-gone")
    assert _code(raised) == "StateMachineDoesNotExist"
    with pytest.raises(ClientError) as raised:
        sfn.publish_state_machine_version(stateMachineArn="arn:aws:states:nope")
    assert _code(raised) == "InvalidArn"


def test_versions_are_listed_newest_first_in_pages(
    two_versions: tuple[str, str, str], sfn: Any
) -> None:
    arn, v1, v2 = two_versions
    first = sfn.list_state_machine_versions(stateMachineArn=arn, maxResults=1)
    assert [v["stateMachineVersionArn"] for v in first["stateMachineVersions"]] == [v2]
    rest = sfn.list_state_machine_versions(
        stateMachineArn=arn, maxResults=1, nextToken=first["nextToken"]
    )
    assert [v["stateMachineVersionArn"] for v in rest["stateMachineVersions"]] == [v1]
    assert "nextToken" not in rest


def test_a_version_an_alias_routes_to_cannot_be_deleted(
    two_versions: tuple[str, str, str], sfn: Any
) -> None:
    arn, v1, v2 = two_versions
    sfn.create_state_machine_alias(
        name="live", routingConfiguration=[{"stateMachineVersionArn": v2, "weight": 100}]
    )
    with pytest.raises(ClientError) as raised:
        sfn.delete_state_machine_version(stateMachineVersionArn=v2)
    assert _code(raised) == "ConflictException"
    sfn.delete_state_machine_version(stateMachineVersionArn=v1)
    listed = sfn.list_state_machine_versions(stateMachineArn=arn)["stateMachineVersions"]
    assert [v["stateMachineVersionArn"] for v in listed] == [v2]


def test_an_execution_of_a_version_runs_that_version_and_says_so(
    two_versions: tuple[str, str, str], sfn: Any
) -> None:
    arn, _, v2 = two_versions
    ran = sfn.start_execution(stateMachineArn=v2, name="on-v2")["executionArn"]
    assert ran == arn.replace(":stateMachine:", ":execution:") + ":on-v2"
    wait_until_finished(sfn, [ran])
    described = sfn.describe_execution(executionArn=ran)
    assert described["status"] == "FAILED"
    assert described["stateMachineArn"] == arn
    assert described["stateMachineVersionArn"] == v2
    assert "stateMachineAliasArn" not in described
    listed = sfn.list_executions(stateMachineArn=arn)["executions"]
    assert [(e["executionArn"], e.get("stateMachineVersionArn")) for e in listed] == [(ran, v2)]
    for_execution = sfn.describe_state_machine_for_execution(executionArn=ran)
    assert json.loads(for_execution["definition"]) == FAIL
    assert for_execution["stateMachineArn"] == arn
    assert for_execution["roleArn"] == ROLE


def test_an_alias_routes_starts_by_weight(two_versions: tuple[str, str, str], sfn: Any) -> None:
    _, v1, v2 = two_versions
    alias = sfn.create_state_machine_alias(
        name="live",
        routingConfiguration=[
            {"stateMachineVersionArn": v1, "weight": 80},
            {"stateMachineVersionArn": v2, "weight": 20},
        ],
    )["stateMachineAliasArn"]
    started = [
        sfn.start_execution(stateMachineArn=alias, name=f"run-{i}")["executionArn"]
        for i in range(100)
    ]
    described = [sfn.describe_execution(executionArn=a) for a in started]
    assert {d["stateMachineAliasArn"] for d in described} == {alias}
    on_v2 = sum(d["stateMachineVersionArn"] == v2 for d in described)
    assert 8 <= on_v2 <= 35
    through = sfn.list_executions(stateMachineArn=alias, maxResults=1000)["executions"]
    assert len(through) == 100
    of_v2 = sfn.list_executions(stateMachineArn=v2, maxResults=1000)["executions"]
    assert len(of_v2) == on_v2
    assert all(e["stateMachineVersionArn"] == v2 for e in of_v2)


def test_describe_for_execution_gives_the_definition_it_started_with(
    make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    arn = make_state_machine("checkout", PASS)
    before = start(arn, "before")
    wait_until_finished(sfn, [before])
    sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(FAIL))
    after = start(arn, "after")
    old = sfn.describe_state_machine_for_execution(executionArn=before)
    new = sfn.describe_state_machine_for_execution(executionArn=after)
    assert json.loads(old["definition"]) == PASS
    assert json.loads(new["definition"]) == FAIL
    assert old["revisionId"] != new["revisionId"]
    assert "stateMachineVersionArn" not in sfn.describe_execution(executionArn=before)


def test_unknown_versions_aliases_and_executions_are_refused_as_aws_does(
    two_versions: tuple[str, str, str], sfn: Any
) -> None:
    arn, _, _ = two_versions
    with pytest.raises(ClientError) as raised:
        sfn.start_execution(stateMachineArn=f"{arn}:9")
    assert _code(raised) == "StateMachineDoesNotExist"
    with pytest.raises(ClientError) as raised:
        sfn.start_execution(stateMachineArn=f"{arn}:nosuchalias")
    assert _code(raised) == "ResourceNotFound"
    gone = arn.replace(":stateMachine:", ":execution:") + ":never"
    with pytest.raises(ClientError) as raised:
        sfn.describe_state_machine_for_execution(executionArn=gone)
    assert _code(raised) == "ExecutionDoesNotExist"


def test_a_repeated_start_of_a_version_with_the_same_name_and_input_is_one_execution(
    two_versions: tuple[str, str, str], sfn: Any
) -> None:
    arn, _, _ = two_versions
    long_wait = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 60, "End": True}}}
    sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(long_wait))
    v3 = sfn.publish_state_machine_version(stateMachineArn=arn)["stateMachineVersionArn"]
    first = sfn.start_execution(stateMachineArn=v3, name="once", input="{}")
    second = sfn.start_execution(stateMachineArn=v3, name="once", input="{}")
    assert first["executionArn"] == second["executionArn"]
    with pytest.raises(ClientError) as raised:
        sfn.start_execution(stateMachineArn=v3, name="once", input='{"other": 1}')
    assert _code(raised) == "ExecutionAlreadyExists"
    sfn.stop_execution(executionArn=first["executionArn"])
