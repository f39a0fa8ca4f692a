"""redrive.request_redrive against the AWS-faithful fake: one RedriveExecution per
confirmation at most (and AWS's clientToken), a live re-check first, every
attempt recorded as an ActionRequest."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from executions import aws
from executions.actions import redrive
from executions.models import ActionRequest, Execution
from executions.sync import flows, runs
from fakeaws.app import _find_execution
from tests.support.aws_faults import Withholding, refused_url
from tests.support.factories import execution_row
from tests.support.helpers import FAIL, PASS, wait_for, wait_until_finished

pytestmark = pytest.mark.django_db


def calls(fake_aws: Any, operation: str) -> int:
    return int(fake_aws.post("/fakeaws/calls", {})["calls"].get(operation, 0))


@pytest.fixture
def redriver(django_user_model: Any) -> Any:
    """A user with the permission executions.redrive_execution (and not stop)."""
    person = django_user_model.objects.create_user(username="fixer", password="fixer-pass-123")
    person.user_permissions.add(Permission.objects.get(codename="redrive_execution"))
    return person


@pytest.fixture
def failed(
    make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> Execution:
    """A FAILED execution (Order.Invalid in the state Boom), synced into the cache."""
    arn = start(make_state_machine("orders", FAIL), "order-1")
    wait_until_finished(sfn, [arn])
    return flows.import_execution(arn)


def redrive_it(ex: Execution, who: Any, token: uuid.UUID | None = None) -> ActionRequest:
    return redrive.request_redrive(ex, who, request_token=token or uuid.uuid4())


def test_it_redrives_a_failed_execution_as_its_second_attempt(
    failed: Execution, redriver: Any, fake_aws: Any, sfn: Any
) -> None:
    token = uuid.uuid4()
    with aws.count_calls() as counted:
        attempt = redrive_it(failed, redriver, token)

    assert attempt.outcome == ActionRequest.Outcome.DONE
    # A live re-check, then the redrive: nothing else.
    assert dict(counted) == {"DescribeExecution": 1, "RedriveExecution": 1}
    row = ActionRequest.objects.get()
    assert row.kind == ActionRequest.Kind.REDRIVE
    assert (row.target_arn, row.execution_id, row.result_arn) == (failed.arn, failed.pk, failed.arn)
    assert (row.user, row.username) == (redriver, "fixer")
    assert row.request_token == token
    assert row.batch_id is None
    assert row.parameters == {
        "status_before": "FAILED",
        "redrive_count_before": 0,
        "client_token": str(token),
    }
    assert "redriveDate" in row.aws_response
    d = sfn.describe_execution(executionArn=failed.arn)
    assert (d["status"], d["redriveCount"]) == ("RUNNING", 1)
    # The cache says so at once, and the sync is asked to confirm it.
    cached = Execution.objects.get(pk=failed.pk)
    assert (cached.status, cached.redrive_count) == ("RUNNING", 1)
    assert cached.redrive_date is not None
    assert (cached.stop_date, cached.error, cached.cause) == (None, None, None)
    # Whether it may be redriven again is AWS's to say once this attempt ends.
    assert (cached.redrive_status, cached.redrive_status_reason) == ("", "")
    assert cached.needs_describe
    assert not cached.history_complete
    assert cached.sync_due_at is not None
    assert cached.sync_due_at <= timezone.now()


def test_the_sync_then_reads_the_second_attempt_after_execution_redriven(
    failed: Execution, redriver: Any, fake_aws: Any, sfn: Any
) -> None:
    assert redrive_it(failed, redriver).outcome == ActionRequest.Outcome.DONE
    ex = Execution.objects.get(pk=failed.pk)
    flows.sync_execution(ex, runs.Stats())
    types = list(ex.events.order_by("event_id").values_list("type", flat=True))
    assert types[-1] == "ExecutionRedriven"
    assert types.count("ExecutionFailed") == 1


def test_the_same_token_never_redrives_twice(
    failed: Execution, redriver: Any, fake_aws: Any
) -> None:
    token = uuid.uuid4()
    first = redrive_it(failed, redriver, token)
    again = redrive_it(Execution.objects.get(pk=failed.pk), redriver, token)
    assert again.pk == first.pk
    assert ActionRequest.objects.count() == 1
    assert calls(fake_aws, "RedriveExecution") == 1


def test_aws_client_token_makes_a_repeated_call_redrive_once(
    failed: Execution, fake_aws: Any, sfn: Any
) -> None:
    first = aws.redrive_execution(failed.arn, client_token="same-token")
    again = aws.redrive_execution(failed.arn, client_token="same-token")
    assert first["redriveDate"] == again["redriveDate"]
    assert sfn.describe_execution(executionArn=failed.arn)["redriveCount"] == 1
    # Another token, while it runs again: AWS will not redrive a running execution.
    with pytest.raises(aws.NotRedrivable, match="RUNNING"):
        aws.redrive_execution(failed.arn, client_token="another-token")


def test_a_token_used_for_another_execution_is_refused(
    failed: Execution, redriver: Any, fake_aws: Any
) -> None:
    token = uuid.uuid4()
    redrive_it(failed, redriver, token)
    other = execution_row(status="FAILED")
    with pytest.raises(redrive.TokenReused):
        redrive_it(other, redriver, token)


def test_a_succeeded_execution_is_refused_after_the_live_check(
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    sfn: Any,
    redriver: Any,
    fake_aws: Any,
) -> None:
    arn = start(make_state_machine("hello", PASS), "ok-1")
    wait_until_finished(sfn, [arn])
    ex = flows.import_execution(arn)
    attempt = redrive_it(ex, redriver)
    assert attempt.outcome == ActionRequest.Outcome.REFUSED
    assert "SUCCEEDED" in attempt.aws_response
    assert "nothing was sent" in attempt.aws_response
    assert calls(fake_aws, "RedriveExecution") == 0


def test_a_stale_cache_is_corrected_by_the_live_check(
    failed: Execution, redriver: Any, fake_aws: Any, sfn: Any
) -> None:
    """The cache says FAILED, but someone redrove it meanwhile (the console)."""
    sfn.redrive_execution(executionArn=failed.arn)
    attempt = redrive_it(failed, redriver)
    assert attempt.outcome == ActionRequest.Outcome.REFUSED
    assert "AWS says RUNNING" in attempt.aws_response
    assert attempt.parameters["redrive_count_before"] == 1
    assert calls(fake_aws, "RedriveExecution") == 1  # the console's alone
    cached = Execution.objects.get(pk=failed.pk)
    assert (cached.status, cached.redrive_count) == ("RUNNING", 1)


def test_aws_refusing_the_redrive_is_a_refusal(
    failed: Execution, redriver: Any, fake_aws: Any, sfn: Any
) -> None:
    """The live check was throttled, so the redrive went out: AWS said no."""
    sfn.redrive_execution(executionArn=failed.arn)
    fake_aws.app.configure(
        faults={"throttle_fraction": 1.0, "throttle_operations": ["DescribeExecution"]}
    )
    attempt = redrive_it(failed, redriver)
    assert attempt.outcome == ActionRequest.Outcome.REFUSED
    assert attempt.aws_response.startswith("Not redrivable: AWS says")
    assert "ExecutionNotRedrivable" in attempt.aws_response


def test_an_execution_started_more_than_14_days_ago_is_refused_without_a_call(
    redriver: Any, fake_aws: Any
) -> None:
    ex = execution_row(status="FAILED", started=timezone.now() - dt.timedelta(days=14, minutes=1))
    attempt = redrive_it(ex, redriver)
    assert attempt.outcome == ActionRequest.Outcome.REFUSED
    assert "more than 14 days ago" in attempt.aws_response
    assert calls(fake_aws, "DescribeExecution") == 0
    assert calls(fake_aws, "RedriveExecution") == 0


def test_aws_says_not_redrivable_past_14_days_and_nothing_is_sent(
    failed: Execution, redriver: Any, fake_aws: Any, sfn: Any
) -> None:
    moto_execution = _find_execution(failed.arn)
    moto_execution.start_date = moto_execution.start_date - dt.timedelta(days=15)
    attempt = redrive_it(failed, redriver)
    assert attempt.outcome == ActionRequest.Outcome.REFUSED
    assert "NOT_REDRIVABLE" in attempt.aws_response
    assert "14 days" in attempt.aws_response
    assert calls(fake_aws, "RedriveExecution") == 0
    # AWS says the same to a redrive sent anyway.
    with pytest.raises(aws.NotRedrivable):
        aws.redrive_execution(failed.arn, client_token="x")


def test_a_throttled_redrive_says_try_again(
    failed: Execution, redriver: Any, fake_aws: Any, sfn: Any
) -> None:
    fake_aws.app.configure(
        faults={"throttle_fraction": 1.0, "throttle_operations": ["RedriveExecution"]}
    )
    attempt = redrive_it(failed, redriver)
    assert attempt.outcome == ActionRequest.Outcome.FAILED
    assert attempt.aws_response.startswith("AWS is throttling, try again")
    fake_aws.app.configure(faults={})
    assert sfn.describe_execution(executionArn=failed.arn)["status"] == "FAILED"


def test_a_refused_connection_says_nothing_was_sent(redriver: Any, settings: Any) -> None:
    settings.SFNUI_AWS_ENDPOINT_URL = refused_url()
    ex = execution_row(status="FAILED")
    attempt = redrive_it(ex, redriver)
    assert attempt.outcome == ActionRequest.Outcome.FAILED
    assert attempt.aws_response.startswith("AWS unreachable: the redrive was not sent")
    assert settings.SFNUI_AWS_ENDPOINT_URL.removeprefix("http://") not in attempt.aws_response


def test_an_execution_aws_does_not_know_is_a_recorded_failure(redriver: Any, fake_aws: Any) -> None:
    ex = execution_row(status="FAILED")  # only in the cache
    attempt = redrive_it(ex, redriver)
    assert attempt.outcome == ActionRequest.Outcome.FAILED
    assert "does not know" in attempt.aws_response
    assert calls(fake_aws, "RedriveExecution") == 0


@pytest.mark.parametrize("acted", [True, False], ids=["aws-redrove-it", "aws-did-not"])
def test_a_redrive_sent_without_an_answer_is_unknown_and_rechecked_at_once(
    failed: Execution, redriver: Any, fake_aws: Any, settings: Any, acted: bool
) -> None:
    settings.SFNUI_AWS_READ_TIMEOUT = 0.5
    with Withholding(fake_aws.url, {"RedriveExecution"}, deliver=acted) as endpoint:
        settings.SFNUI_AWS_ENDPOINT_URL = endpoint.url
        attempt = redrive_it(failed, redriver)
    assert endpoint.arrived["RedriveExecution"] >= 1
    assert attempt.outcome == ActionRequest.Outcome.UNKNOWN
    assert attempt.aws_response.startswith("Sent, no answer: the outcome is unknown")
    if acted:
        assert "AWS says RUNNING, redriven (attempt 2)" in attempt.aws_response
    else:
        assert "AWS says FAILED, not redriven (still attempt 1)" in attempt.aws_response
    cached = Execution.objects.get(pk=failed.pk)
    assert cached.redrive_count == (1 if acted else 0)
    assert cached.needs_describe


def test_it_needs_the_permission(failed: Execution, user: Any, operator: Any) -> None:
    for who in (user, operator):  # a viewer, and one who may only stop
        with pytest.raises(PermissionDenied):
            redrive_it(failed, who)
    assert not ActionRequest.objects.exists()


def test_the_cache_tells_what_may_be_redriven() -> None:
    now = timezone.now()
    assert redrive.may_redrive(execution_row(status="FAILED"), now)
    assert redrive.may_redrive(execution_row(status="ABORTED", redrive_status="REDRIVABLE"), now)
    assert "RUNNING" in redrive.why_not(execution_row(status="RUNNING"), now)
    assert "SUCCEEDED" in redrive.why_not(execution_row(status="SUCCEEDED"), now)
    old = execution_row(status="TIMED_OUT", started=now - dt.timedelta(days=15))
    assert "14 days" in redrive.why_not(old, now)
    assert redrive.redrivable_until(old) == old.start_date + dt.timedelta(days=14)
    said_no = execution_row(
        status="FAILED", redrive_status="NOT_REDRIVABLE", redrive_status_reason="too many"
    )
    assert "too many" in redrive.why_not(said_no, now)


def test_with_replay_the_redriven_attempt_reruns_the_failed_step_and_fails_again(
    failed: Execution, redriver: Any, fake_aws: Any, sfn: Any
) -> None:
    fake_aws.app.configure(redrive={"replay": True, "replay_seconds": 0.3})
    assert redrive_it(failed, redriver).outcome == ActionRequest.Outcome.DONE
    wait_for(lambda: sfn.describe_execution(executionArn=failed.arn)["status"] == "FAILED", 10)
    d = sfn.describe_execution(executionArn=failed.arn)
    assert (d["redriveCount"], d["error"], d["redriveStatus"]) == (1, "Order.Invalid", "REDRIVABLE")
    events = sfn.get_execution_history(executionArn=failed.arn)["events"]
    types = [e["type"] for e in events]
    redriven = types.index("ExecutionRedriven")
    # Attempt 2 re-runs the step that failed (Boom), not the one that succeeded (Check).
    assert types[redriven:] == ["ExecutionRedriven", "FailStateEntered", "ExecutionFailed"]
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
