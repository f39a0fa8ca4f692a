"""fakeaws.express: StartExecution of an Express workflow answers as AWS does."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from executions.arns import parse_execution_arn
from tests.conftest import ROLE

PASS = {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}


@pytest.fixture
def express_arn(sfn: Any) -> str:
    arn: str = sfn.create_state_machine(
        name="clicks", definition=json.dumps(PASS), roleArn=ROLE, type="EXPRESS"
    )["stateMachineArn"]
    return arn


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_an_express_start_gets_an_express_arn_and_is_not_idempotent(
    sfn: Any, express_arn: str
) -> None:
    first = sfn.start_execution(stateMachineArn=express_arn, name="click-1", input="{}")
    second = sfn.start_execution(stateMachineArn=express_arn, name="click-1", input="{}")
    assert first["executionArn"] != second["executionArn"]
    parsed = parse_execution_arn(first["executionArn"])
    assert parsed.express
    assert (parsed.state_machine_name, parsed.name) == ("clicks", "click-1")
    assert first["executionArn"].startswith(
        "arn:aws:states:us-east-1:123456789012:express:clicks:click-1:"
    )
    assert first["startDate"] is not None


def test_nothing_of_an_express_execution_is_in_the_api(sfn: Any, express_arn: str) -> None:
    arn = sfn.start_execution(stateMachineArn=express_arn, input="{}")["executionArn"]
    with pytest.raises(ClientError) as described:
        sfn.describe_execution(executionArn=arn)
    assert code(described) == "InvalidArn"
    with pytest.raises(ClientError) as history:
        sfn.get_execution_history(executionArn=arn)
    assert code(history) == "InvalidArn"
    assert sfn.list_executions(stateMachineArn=express_arn)["executions"] == []


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"name": "has space"}, "InvalidName"),
        ({"name": "a" * 81}, "InvalidName"),
        ({"name": "a:b"}, "InvalidName"),
        ({"input": "{nope"}, "InvalidExecutionInput"),
        ({"input": json.dumps("x" * 262_144)}, "InvalidExecutionInput"),
    ],
)
def test_aws_checks_come_first(
    sfn: Any, express_arn: str, params: dict[str, Any], error: str
) -> None:
    with pytest.raises(ClientError) as refused:
        sfn.start_execution(stateMachineArn=express_arn, **{"input": "{}", **params})
    assert code(refused) == error


def test_an_unknown_alias_or_version_is_refused(sfn: Any, express_arn: str) -> None:
    with pytest.raises(ClientError) as alias:
        sfn.start_execution(stateMachineArn=f"{express_arn}:nope", input="{}")
    assert code(alias) == "ResourceNotFound"
    with pytest.raises(ClientError) as version:
        sfn.start_execution(stateMachineArn=f"{express_arn}:7", input="{}")
    assert code(version) == "StateMachineDoesNotExist"


def test_a_standard_start_is_moto_s_as_before(sfn: Any) -> None:
    arn = sfn.create_state_machine(name="std", definition=json.dumps(PASS), roleArn=ROLE)[
        "stateMachineArn"
    ]
    started = sfn.start_execution(stateMachineArn=arn, name="s-1", input="{}")
    assert started["executionArn"].endswith(":execution:std:s-1")
    assert sfn.describe_execution(executionArn=started["executionArn"])["name"] == "s-1"
