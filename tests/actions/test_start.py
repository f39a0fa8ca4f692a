"""actions/start.py: StartExecution from the dashboard, at most once per form,
and the audit row of every attempt."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from executions.actions import start as starting
from executions.models import ActionRequest, Execution, StateMachine
from executions.sync import flows
from tests.conftest import ROLE
from tests.support.aws_faults import Withholding
from tests.support.factories import state_machine_row
from tests.support.helpers import LONG_WAIT

pytestmark = pytest.mark.django_db


def calls(fake_aws: Any, operation: str) -> int:
    return int(fake_aws.post("/fakeaws/calls", {})["calls"].get(operation, 0))


@pytest.fixture
def starter(django_user_model: Any) -> Any:
    from django.contrib.auth.models import Permission

    person = django_user_model.objects.create_user(username="deployer", password="deploy-pass-123")
    person.user_permissions.add(Permission.objects.get(codename="start_execution"))
    return person


@pytest.fixture
def etl(make_state_machine: Callable[..., str]) -> StateMachine:
    return flows.state_machine_for(make_state_machine("nightly-etl", LONG_WAIT))


def run(
    sm: StateMachine,
    who: Any,
    *,
    name: str = "",
    payload: str = '{"day": "2026-12-03"}',
    token: uuid.UUID | None = None,
    target: str = "",
) -> ActionRequest:
    return starting.request_start(
        sm,
        who,
        target_arn=target or sm.arn,
        name=name,
        input_text=payload,
        request_token=token or uuid.uuid4(),
    )


def test_it_starts_records_and_caches_the_new_execution(
    etl: StateMachine, starter: Any, fake_aws: Any, sfn: Any
) -> None:
    text = '{"day": "2026-12-03"}'
    attempt = run(etl, starter, name="etl-manual-1", payload=text)

    assert attempt.outcome == ActionRequest.Outcome.DONE
    assert attempt.kind == ActionRequest.Kind.START
    assert attempt.target_arn == etl.arn
    assert attempt.result_arn == f"{etl.arn.replace(':stateMachine:', ':execution:')}:etl-manual-1"
    assert (attempt.user, attempt.username) == (starter, "deployer")
    assert attempt.parameters == {
        "name": "etl-manual-1",
        "name_generated": False,
        "state_machine": etl.arn,
        "input_bytes": len(text),
        "input_sha256": hashlib.sha256(text.encode()).hexdigest(),
    }
    assert text not in json.dumps(attempt.parameters)  # the input itself is not kept
    # AWS started it ...
    assert sfn.describe_execution(executionArn=attempt.result_arn)["status"] == "RUNNING"
    assert calls(fake_aws, "StartExecution") == 1
    # ... and its page exists at once: described, due for the sync.
    ex = Execution.objects.get(arn=attempt.result_arn)
    assert attempt.execution == ex
    assert (ex.name, ex.status, ex.input) == ("etl-manual-1", "RUNNING", text)
    assert ex.described_at is not None
    assert not ex.needs_describe
    assert ex.sync_due_at is not None
    assert ex.sync_due_at <= timezone.now()


def test_without_a_name_one_is_made_from_the_token_and_a_second_post_sends_nothing(
    etl: StateMachine, starter: Any, fake_aws: Any, sfn: Any
) -> None:
    token = uuid.uuid4()
    first = run(etl, starter, token=token)
    again = run(etl, starter, token=token)

    assert first.pk == again.pk
    assert first.parameters["name"] == f"sfnui-{token}"
    assert first.parameters["name_generated"] is True
    assert calls(fake_aws, "StartExecution") == 1
    assert len(sfn.list_executions(stateMachineArn=etl.arn)["executions"]) == 1
    assert ActionRequest.objects.count() == 1


def test_the_same_name_and_input_as_a_running_one_is_that_execution(
    etl: StateMachine, starter: Any, fake_aws: Any, sfn: Any
) -> None:
    # AWS's idempotent start of a Standard workflow: two forms, one execution.
    first = run(etl, starter, name="etl-7")
    second = run(etl, starter, name="etl-7")
    assert (first.outcome, second.outcome) == ("DONE", "DONE")
    assert first.result_arn == second.result_arn
    assert len(sfn.list_executions(stateMachineArn=etl.arn)["executions"]) == 1
    assert Execution.objects.filter(arn=first.result_arn).count() == 1


def test_the_same_name_with_another_input_is_refused(
    etl: StateMachine, starter: Any, fake_aws: Any, sfn: Any
) -> None:
    run(etl, starter, name="etl-8", payload='{"day": 1}')
    refused = run(etl, starter, name="etl-8", payload='{"day": 2}')

    assert refused.outcome == ActionRequest.Outcome.REFUSED
    assert "already exists (with a different input)" in refused.aws_response
    assert "ExecutionAlreadyExists" in refused.aws_response
    assert refused.result_arn == ""  # nothing was made
    assert refused.parameters["existing_execution"].endswith(":etl-8")
    assert len(sfn.list_executions(stateMachineArn=etl.arn)["executions"]) == 1


def test_the_name_of_a_finished_execution_is_refused_whatever_the_input(
    etl: StateMachine, starter: Any, fake_aws: Any, sfn: Any
) -> None:
    done = run(etl, starter, name="etl-9", payload="{}")
    sfn.stop_execution(executionArn=done.result_arn)
    refused = run(etl, starter, name="etl-9", payload="{}")
    assert refused.outcome == ActionRequest.Outcome.REFUSED
    assert "it is ABORTED, and a name cannot be used again for 90 days" in refused.aws_response


def test_a_throttled_start_is_a_recorded_failure(
    etl: StateMachine, starter: Any, fake_aws: Any, sfn: Any
) -> None:
    fake_aws.app.configure(
        faults={"throttle_fraction": 1.0, "throttle_operations": ["StartExecution"]}
    )
    attempt = run(etl, starter, name="etl-10")
    assert attempt.outcome == ActionRequest.Outcome.FAILED
    assert attempt.aws_response.startswith("AWS is throttling: nothing was started")
    assert attempt.parameters["aws_error"] == {"code": "ThrottlingException", "kind": "throttled"}
    fake_aws.app.configure(faults={})
    assert sfn.list_executions(stateMachineArn=etl.arn)["executions"] == []
    assert not Execution.objects.exists()


def test_aws_unreachable_is_a_recorded_failure(starter: Any) -> None:
    # No fake_aws: nothing listens on the endpoint.
    sm = state_machine_row("offline")
    attempt = run(sm, starter, name="x-1")
    assert attempt.outcome == ActionRequest.Outcome.FAILED
    assert attempt.aws_response.startswith("AWS unreachable: nothing was started")
    assert attempt.parameters["aws_error"]["kind"] == "unreachable"


def test_a_state_machine_aws_does_not_know_is_a_recorded_failure(
    starter: Any, fake_aws: Any
) -> None:
    sm = state_machine_row("ghost")  # only in the cache
    attempt = run(sm, starter, name="g-1")
    assert attempt.outcome == ActionRequest.Outcome.FAILED
    assert "does not know this state machine" in attempt.aws_response
    assert attempt.parameters["aws_error"]["kind"] == "not_found"


@pytest.mark.parametrize("acted", [True, False])
def test_a_start_that_got_no_answer_is_checked_by_its_name(
    etl: StateMachine, starter: Any, fake_aws: Any, settings: Any, sfn: Any, acted: bool
) -> None:
    settings.SFNUI_AWS_READ_TIMEOUT = 0.5
    with Withholding(fake_aws.url, {"StartExecution"}, deliver=acted) as endpoint:
        settings.SFNUI_AWS_ENDPOINT_URL = endpoint.url
        attempt = run(etl, starter, name="etl-lost")
    assert endpoint.arrived["StartExecution"] >= 1
    assert attempt.aws_response.startswith("Sent, no answer: the outcome is unknown")
    executions = sfn.list_executions(stateMachineArn=etl.arn)["executions"]
    if acted:
        # botocore sent it again with the same name and input: still one execution.
        assert len(executions) == 1
        assert attempt.outcome == ActionRequest.Outcome.DONE
        assert "Re-checked at once: AWS has the execution etl-lost" in attempt.aws_response
        assert Execution.objects.get(arn=attempt.result_arn).status == "RUNNING"
    else:
        assert executions == []
        assert attempt.outcome == ActionRequest.Outcome.UNKNOWN
        assert "AWS does not know an execution named etl-lost" in attempt.aws_response
        assert not Execution.objects.exists()


def test_it_needs_the_permission(etl: StateMachine, user: Any, fake_aws: Any) -> None:
    with pytest.raises(PermissionDenied):
        run(etl, user, name="nope")
    assert ActionRequest.objects.count() == 0
    assert calls(fake_aws, "StartExecution") == 0


def test_a_token_used_for_another_state_machine_is_refused(
    etl: StateMachine, starter: Any, fake_aws: Any, make_state_machine: Callable[..., str]
) -> None:
    other = flows.state_machine_for(make_state_machine("other", LONG_WAIT))
    token = uuid.uuid4()
    run(etl, starter, token=token)
    with pytest.raises(starting.TokenReused):
        run(other, starter, token=token)
    assert calls(fake_aws, "StartExecution") == 1


def test_only_the_state_machine_its_versions_and_aliases_can_be_targets(
    etl: StateMachine, starter: Any, fake_aws: Any
) -> None:
    with pytest.raises(ValueError, match="not nightly-etl or one of its versions"):
        run(etl, starter, target="arn:aws:states:us-east-1:123456789012:stateMachine:elsewhere")
    assert calls(fake_aws, "StartExecution") == 0


def test_an_express_workflow_is_started_but_not_cached(
    starter: Any, fake_aws: Any, sfn: Any
) -> None:
    arn = sfn.create_state_machine(
        name="clicks",
        definition=json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}),
        roleArn=ROLE,
        type="EXPRESS",
    )["stateMachineArn"]
    sm = flows.state_machine_for(arn)
    StateMachine.objects.filter(pk=sm.pk).update(type="EXPRESS")
    sm.refresh_from_db()

    attempt = run(sm, starter, name="click-1")
    assert attempt.outcome == ActionRequest.Outcome.DONE
    assert attempt.result_arn
    assert starting.express(attempt)
    # AWS's Express ARN (fakeaws.express): nothing of it can be described.
    assert ":express:clicks:click-1:" in attempt.result_arn
    assert attempt.execution is None
    assert not Execution.objects.exists()
    assert calls(fake_aws, "DescribeExecution") == 0


@pytest.mark.parametrize(
    ("name", "complaint"),
    [
        ("", "1 to 80 characters"),
        ("x" * 81, "1 to 80 characters"),
        ("has space", "cannot contain a space"),
        ("tab\there", "cannot contain whitespace"),
        ("a/b", "cannot contain '/'"),
        ("a:b", "cannot contain ':'"),
        ("x{y}", "cannot contain '{'"),
        ("bell\x07", "control character U+0007"),
        ("c1\x85", "whitespace"),
        ("q?", "cannot contain '?'"),
    ],
)
def test_names_aws_refuses_are_refused_here_first(name: str, complaint: str) -> None:
    problem = starting.name_problem(name)
    assert problem is not None
    assert complaint in problem


@pytest.mark.parametrize("name", ["etl-2026-12-03", "a" * 80, "ünïcode_ok.1", "A"])
def test_names_aws_takes(name: str) -> None:
    assert starting.name_problem(name) is None


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("{", "not valid JSON: Expecting property name"),
        ('{"a": NaN}', "not valid JSON"),
        ("{'a': 1}", "not valid JSON"),
        ('"' + "x" * (256 * 1024) + '"', "AWS takes at most 262,144 bytes"),
        ('"' + "é" * (128 * 1024) + '"', "262,146 bytes"),  # UTF-8 bytes, not characters
    ],
)
def test_inputs_aws_refuses_are_refused_here_first(text: str, complaint: str) -> None:
    problem = starting.input_problem(text)
    assert problem is not None
    assert complaint in problem


@pytest.mark.parametrize("text", ["{}", "[1, 2]", '"just a string"', "42", '{"a": {"b": null}}'])
def test_inputs_aws_takes(text: str) -> None:
    assert starting.input_problem(text) is None


def test_a_start_through_an_alias_runs_a_version_and_the_row_says_which(
    starter: Any, fake_aws: Any, sfn: Any
) -> None:
    from executions.models import StateMachineAlias, StateMachineVersion

    arn = sfn.create_state_machine(
        name="canary",
        definition=json.dumps(LONG_WAIT),
        roleArn=ROLE,
        publish=True,
        versionDescription="first",
    )["stateMachineArn"]
    version_arn = sfn.list_state_machine_versions(stateMachineArn=arn)["stateMachineVersions"][0][
        "stateMachineVersionArn"
    ]
    alias_arn = sfn.create_state_machine_alias(
        name="live", routingConfiguration=[{"stateMachineVersionArn": version_arn, "weight": 100}]
    )["stateMachineAliasArn"]
    sm = flows.state_machine_for(arn)
    StateMachineVersion.objects.create(arn=version_arn, state_machine=sm, version=1)
    StateMachineAlias.objects.create(
        arn=alias_arn,
        state_machine=sm,
        name="live",
        routing=[{"stateMachineVersionArn": version_arn, "weight": 100}],
    )

    attempt = run(sm, starter, name="canary-1", target=alias_arn)

    assert attempt.outcome == ActionRequest.Outcome.DONE
    assert attempt.target_arn == alias_arn
    assert attempt.result_arn == f"{arn.replace(':stateMachine:', ':execution:')}:canary-1"
    ex = Execution.objects.get(arn=attempt.result_arn)
    assert ex.state_machine == sm
    assert ex.state_machine_alias_arn == alias_arn
    # DescribeExecution said which version the alias picked.
    assert ex.state_machine_version_arn == version_arn


def test_the_same_form_sent_again_with_another_input_or_name_is_not_a_double_click(
    etl: StateMachine, starter: Any, fake_aws: Any
) -> None:
    token = uuid.uuid4()
    run(etl, starter, token=token, payload='{"day": 1}')
    with pytest.raises(starting.TokenReused, match="input_sha256 differs"):
        run(etl, starter, token=token, payload='{"day": 2}')
    with pytest.raises(starting.TokenReused, match="name differs"):
        run(etl, starter, token=token, payload='{"day": 1}', name="etl-other")
    assert calls(fake_aws, "StartExecution") == 1
