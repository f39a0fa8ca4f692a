"""stopping.request_stop against the AWS-faithful fake: one StopExecution per
confirmation at most, a live re-check first, every attempt recorded."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connections
from django.utils import timezone
from kombu.exceptions import OperationalError

from executions import aws, tasks
from executions.actions import bulk
from executions.actions import stop as stopping
from executions.models import BulkStop, BulkStopItem, Execution, StopRequest
from executions.sync import flows, runs
from tests.support.aws_faults import Withholding, refused_url
from tests.support.factories import execution_row
from tests.support.helpers import LONG_WAIT, PASS, wait_until_finished

pytestmark = pytest.mark.django_db


def calls(fake_aws: Any, operation: str) -> int:
    return int(fake_aws.post("/fakeaws/calls", {})["calls"].get(operation, 0))


@pytest.fixture
def runaway(make_state_machine: Callable[..., str], start: Callable[..., str]) -> Execution:
    """A running execution (it waits an hour), synced into the cache."""
    return flows.import_execution(start(make_state_machine("nightly-etl", LONG_WAIT), "etl-1"))


def stop(ex: Execution, who: Any, token: uuid.UUID | None = None, **kw: Any) -> StopRequest:
    return stopping.request_stop(
        ex,
        who,
        error=kw.get("error", "Ops.RunawayJob"),
        cause=kw.get("cause", f"Stopped by {who.username}: runaway during INC-42"),
        request_token=token or uuid.uuid4(),
    )


def test_it_stops_a_running_execution_and_aws_keeps_who_and_why(
    runaway: Execution, operator: Any, fake_aws: Any, sfn: Any
) -> None:
    with aws.count_calls() as counted:
        attempt = stop(runaway, operator)

    assert attempt.outcome == StopRequest.Outcome.STOPPED
    assert (attempt.user, attempt.username) == (operator, "oncall")
    assert attempt.status_before == "RUNNING"
    assert "stopDate" in attempt.aws_response
    # A live re-check, then the stop: nothing else.
    assert dict(counted) == {"DescribeExecution": 1, "StopExecution": 1}
    d = sfn.describe_execution(executionArn=runaway.arn)
    assert d["status"] == "ABORTED"
    assert d["error"] == "Ops.RunawayJob"
    assert d["cause"] == "Stopped by oncall: runaway during INC-42"
    # The cache says so at once, and the sync is asked to confirm it.
    cached = Execution.objects.get(pk=runaway.pk)
    assert (cached.status, cached.error) == ("ABORTED", "Ops.RunawayJob")
    assert cached.stop_date is not None
    assert cached.needs_describe
    assert cached.sync_due_at is not None
    assert cached.sync_due_at <= timezone.now()


def test_the_same_token_never_stops_twice(runaway: Execution, operator: Any, fake_aws: Any) -> None:
    token = uuid.uuid4()
    first = stop(runaway, operator, token)
    again = stop(runaway, operator, token)
    assert again.pk == first.pk
    assert StopRequest.objects.count() == 1
    assert calls(fake_aws, "StopExecution") == 1


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_posts_of_one_form_send_one_stop(
    runaway: Execution, operator: Any, fake_aws: Any
) -> None:
    token = uuid.uuid4()
    results: list[StopRequest] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def post() -> None:
        try:
            barrier.wait()
            results.append(stop(runaway, operator, token))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=post) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(results) == 2
    assert {r.pk for r in results} == {StopRequest.objects.get().pk}
    assert {r.outcome for r in results} == {StopRequest.Outcome.STOPPED}
    assert calls(fake_aws, "StopExecution") == 1


def test_a_duplicate_waits_for_the_first_attempt_to_get_its_answer(
    runaway: Execution, operator: Any, fake_aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = uuid.uuid4()
    claimed = StopRequest.objects.create(
        execution=runaway,
        user=operator,
        username="oncall",
        outcome=StopRequest.Outcome.FAILED,
        aws_response=stopping.IN_FLIGHT,
        request_token=token,
    )
    monkeypatch.setattr(stopping, "_POLL", 0.01)
    polls = 0

    def answered_after_a_while(self: StopRequest, *args: Any, **kwargs: Any) -> None:
        # Stands in for the first request, which records AWS's answer meanwhile.
        nonlocal polls
        polls += 1
        if polls == 3:
            self.outcome, self.aws_response = StopRequest.Outcome.STOPPED, '{"stopDate": "x"}'

    monkeypatch.setattr(StopRequest, "refresh_from_db", answered_after_a_while)
    attempt = stop(runaway, operator, token)
    assert attempt.pk == claimed.pk
    assert attempt.outcome == StopRequest.Outcome.STOPPED
    assert calls(fake_aws, "StopExecution") == 0
    assert calls(fake_aws, "DescribeExecution") == 1  # the import only


def test_a_duplicate_gives_up_waiting_and_still_sends_nothing(
    runaway: Execution,
    operator: Any,
    fake_aws: Any,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
) -> None:
    token = uuid.uuid4()
    StopRequest.objects.create(
        execution=runaway,
        username="oncall",
        outcome=StopRequest.Outcome.FAILED,
        aws_response=stopping.IN_FLIGHT,
        request_token=token,
    )
    settings.SFNUI_AWS_PAGE_DEADLINE = 0.0
    monkeypatch.setattr(stopping, "DUPLICATE_MARGIN", 0.05)
    monkeypatch.setattr(stopping, "_POLL", 0.01)
    attempt = stop(runaway, operator, token)
    assert stopping.in_flight(attempt)
    assert calls(fake_aws, "StopExecution") == 0


def test_a_token_of_another_execution_is_refused(
    runaway: Execution,
    operator: Any,
    fake_aws: Any,
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
) -> None:
    token = uuid.uuid4()
    stop(runaway, operator, token)
    other = flows.import_execution(start(make_state_machine("other", LONG_WAIT), "o-1"))
    with pytest.raises(stopping.TokenReused):
        stop(other, operator, token)
    assert calls(fake_aws, "StopExecution") == 1
    assert Execution.objects.get(pk=other.pk).status == "RUNNING"


def test_it_refuses_an_execution_that_finished_since_the_last_sync(
    runaway: Execution, operator: Any, fake_aws: Any, sfn: Any
) -> None:
    # Someone stopped it in the console; the cache still says RUNNING.
    sfn.stop_execution(executionArn=runaway.arn, error="Console", cause="by hand")
    assert Execution.objects.get(pk=runaway.pk).status == "RUNNING"

    attempt = stop(runaway, operator)

    assert attempt.outcome == StopRequest.Outcome.REFUSED
    assert attempt.status_before == "ABORTED"
    assert "nothing was sent" in attempt.aws_response
    assert calls(fake_aws, "StopExecution") == 1  # the console's, not ours
    cached = Execution.objects.get(pk=runaway.pk)
    assert (cached.status, cached.error, cached.cause) == ("ABORTED", "Console", "by hand")


def test_it_refuses_a_success_the_cache_has_not_seen_yet(
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    operator: Any,
    fake_aws: Any,
    sfn: Any,
) -> None:
    arn = start(make_state_machine("quick", PASS), "q-1")
    wait_until_finished(sfn, [arn])
    ex = flows.import_execution(arn)
    Execution.objects.filter(pk=ex.pk).update(status="RUNNING", stop_date=None)
    ex.refresh_from_db()

    attempt = stop(ex, operator)

    assert (attempt.outcome, attempt.status_before) == (StopRequest.Outcome.REFUSED, "SUCCEEDED")
    assert calls(fake_aws, "StopExecution") == 0
    assert Execution.objects.get(pk=ex.pk).status == "SUCCEEDED"


def test_a_finished_execution_in_the_cache_costs_no_call(operator: Any, fake_aws: Any) -> None:
    ex = execution_row(status="SUCCEEDED")
    with aws.count_calls() as counted:
        attempt = stop(ex, operator)
    assert attempt.outcome == StopRequest.Outcome.REFUSED
    assert attempt.status_before == "SUCCEEDED"
    assert "nothing was sent" in attempt.aws_response
    assert sum(counted.values()) == 0


def test_aws_unreachable_is_a_recorded_failure(operator: Any) -> None:
    # No fake_aws: the endpoint is 127.0.0.1:9, where nothing listens.
    ex = execution_row(status="RUNNING")
    attempt = stop(ex, operator)
    assert attempt.outcome == StopRequest.Outcome.FAILED
    assert attempt.aws_response.startswith("AWS unreachable")
    assert StopRequest.objects.get().outcome == StopRequest.Outcome.FAILED
    assert Execution.objects.get(pk=ex.pk).status == "RUNNING"


def test_an_execution_aws_does_not_know_is_a_recorded_failure(operator: Any, fake_aws: Any) -> None:
    ex = execution_row(status="RUNNING")  # only in the cache
    attempt = stop(ex, operator)
    assert attempt.outcome == StopRequest.Outcome.FAILED
    assert "does not know" in attempt.aws_response
    assert calls(fake_aws, "StopExecution") == 0


def test_a_throttled_recheck_does_not_block_the_stop(
    runaway: Execution, operator: Any, fake_aws: Any, sfn: Any
) -> None:
    fake_aws.app.configure(
        faults={"throttle_fraction": 1.0, "throttle_operations": ["DescribeExecution"]}
    )
    attempt = stop(runaway, operator)
    assert attempt.outcome == StopRequest.Outcome.STOPPED
    assert attempt.status_before == "RUNNING"  # as the cache had it
    fake_aws.app.configure(faults={})
    assert sfn.describe_execution(executionArn=runaway.arn)["status"] == "ABORTED"


def test_a_throttled_stop_says_try_again(
    runaway: Execution, operator: Any, fake_aws: Any, sfn: Any
) -> None:
    fake_aws.app.configure(
        faults={"throttle_fraction": 1.0, "throttle_operations": ["StopExecution"]}
    )
    attempt = stop(runaway, operator)
    assert attempt.outcome == StopRequest.Outcome.FAILED
    assert attempt.aws_response.startswith("AWS is throttling, try again")
    fake_aws.app.configure(faults={})
    assert sfn.describe_execution(executionArn=runaway.arn)["status"] == "RUNNING"


def test_it_needs_the_permission(runaway: Execution, user: Any, fake_aws: Any) -> None:
    with pytest.raises(PermissionDenied):
        stop(runaway, user)
    assert StopRequest.objects.count() == 0
    assert calls(fake_aws, "StopExecution") == 0


def test_the_audit_outlives_the_user(runaway: Execution, operator: Any, fake_aws: Any) -> None:
    attempt = stop(runaway, operator)
    operator.delete()
    attempt.refresh_from_db()
    assert (attempt.user, attempt.username) == (None, "oncall")


def test_it_enqueues_a_resync_once_committed(
    runaway: Execution,
    operator: Any,
    fake_aws: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    sent: list[str] = []
    monkeypatch.setattr(tasks.sync_execution_now, "delay", sent.append)
    with django_capture_on_commit_callbacks(execute=True):
        stop(runaway, operator)
    assert sent == [runaway.arn]


def test_a_broker_that_is_down_leaves_the_resync_due(
    runaway: Execution,
    operator: Any,
    fake_aws: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    def broker_down(arn: str) -> None:
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.sync_execution_now, "delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        attempt = stop(runaway, operator)
    assert attempt.outcome == StopRequest.Outcome.STOPPED
    cached = Execution.objects.get(pk=runaway.pk)
    assert cached.needs_describe
    assert cached.sync_due_at is not None
    assert cached.sync_due_at <= timezone.now()
    # And the sync that the scheduler runs later confirms it from AWS.
    flows.sync_execution(cached, runs.Stats())
    cached.refresh_from_db()
    assert cached.status == "ABORTED"
    assert cached.history_complete
    assert cached.events.filter(type="ExecutionAborted").exists()


def test_an_unexpected_error_is_still_a_recorded_attempt(
    runaway: Execution, operator: Any, fake_aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(arn: str) -> dict[str, Any]:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(aws, "describe_execution", broken)
    attempt = stop(runaway, operator)
    assert attempt.outcome == StopRequest.Outcome.FAILED
    assert "internal error" in attempt.aws_response
    assert not stopping.in_flight(StopRequest.objects.get())


def test_an_error_after_aws_accepted_the_stop_keeps_its_answer(
    runaway: Execution, operator: Any, fake_aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(arn: str) -> None:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(stopping, "_enqueue_resync", broken)
    monkeypatch.setattr("executions.actions.stop.transaction.on_commit", lambda fn: fn())
    attempt = stop(runaway, operator)
    assert attempt.outcome == StopRequest.Outcome.STOPPED
    assert "Not sent" not in attempt.aws_response
    assert "then an internal error (ConnectionError" in attempt.aws_response
    assert calls(fake_aws, "StopExecution") == 1
    assert aws.describe_execution(runaway.arn)["status"] == "ABORTED"


def test_an_error_while_the_stop_is_on_its_way_is_unknown_not_unsent(
    runaway: Execution, operator: Any, fake_aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = aws.stop_execution

    def sent_then_broken(arn: str, **kw: Any) -> dict[str, Any]:
        real(arn, **kw)
        raise RuntimeError("the answer could not be read")

    monkeypatch.setattr(aws, "stop_execution", sent_then_broken)
    attempt = stop(runaway, operator)
    assert attempt.outcome == StopRequest.Outcome.UNKNOWN
    assert attempt.aws_response.startswith("The stop may have been sent")
    assert "Not sent" not in attempt.aws_response
    assert Execution.objects.get(pk=runaway.pk).needs_describe
    assert aws.describe_execution(runaway.arn)["status"] == "ABORTED"


def test_stopping_works_while_redis_is_down(
    runaway: Execution, operator: Any, fake_aws: Any, settings: Any
) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/5"  # nothing listens
    attempt = stop(runaway, operator)
    assert attempt.outcome == StopRequest.Outcome.STOPPED


def test_default_cause_names_the_user_and_the_time() -> None:
    from executions.web.stop_form import default_cause

    at = dt.datetime(2026, 3, 1, 9, 30, 5, tzinfo=dt.UTC)
    assert default_cause("oncall", at) == "Stopped by oncall via sfnui at 2026-03-01 09:30:05 UTC"


# --- Sent, no answer: the outcome is unknown (issue 10, item 4) -------------------------


@pytest.mark.parametrize("acted", [True, False], ids=["aws-stopped-it", "aws-did-not"])
def test_a_stop_sent_without_an_answer_is_unknown_and_rechecked_at_once(
    runaway: Execution, operator: Any, fake_aws: Any, settings: Any, acted: bool
) -> None:
    settings.SFNUI_AWS_READ_TIMEOUT = 0.5
    with Withholding(fake_aws.url, {"StopExecution"}, deliver=acted) as endpoint:
        settings.SFNUI_AWS_ENDPOINT_URL = endpoint.url
        attempt = stop(runaway, operator)
    assert endpoint.arrived["StopExecution"] >= 1
    assert attempt.outcome == StopRequest.Outcome.UNKNOWN
    assert attempt.aws_response.startswith("Sent, no answer: the outcome is unknown")
    status = "ABORTED" if acted else "RUNNING"
    # The re-check after the stop: what AWS says now, in the audit and the cache.
    assert f"Re-checked at once: AWS says {status}" in attempt.aws_response
    assert StopRequest.objects.get().outcome == StopRequest.Outcome.UNKNOWN
    cached = Execution.objects.get(pk=runaway.pk)
    assert cached.status == status
    # ... and the next sync checks it again.
    assert cached.needs_describe
    assert cached.sync_due_at is not None
    assert cached.sync_due_at <= timezone.now()


def test_a_stop_nobody_answers_and_no_recheck_answers_is_still_unknown(
    runaway: Execution, operator: Any, fake_aws: Any, settings: Any
) -> None:
    settings.SFNUI_AWS_READ_TIMEOUT = 0.5
    with Withholding(
        fake_aws.url, {"StopExecution"}, then_withhold=frozenset({"DescribeExecution"})
    ) as endpoint:
        settings.SFNUI_AWS_ENDPOINT_URL = endpoint.url
        with aws.count_calls() as counted:
            attempt = stop(runaway, operator)
    assert attempt.outcome == StopRequest.Outcome.UNKNOWN
    assert "The re-check got no answer either" in attempt.aws_response
    assert counted["DescribeExecution"] >= 1
    assert Execution.objects.get(pk=runaway.pk).needs_describe


def test_a_refused_connection_says_nothing_was_sent(operator: Any, settings: Any) -> None:
    settings.SFNUI_AWS_ENDPOINT_URL = refused_url()
    ex = execution_row(status="RUNNING")
    attempt = stop(ex, operator)
    assert attempt.outcome == StopRequest.Outcome.FAILED
    assert "nothing could be sent" in attempt.aws_response
    # Where the endpoint is stays in the log, not on the page or in the audit.
    assert settings.SFNUI_AWS_ENDPOINT_URL.removeprefix("http://") not in attempt.aws_response


def test_the_duplicate_wait_outlasts_the_first_attempts_page_deadline(settings: Any) -> None:
    settings.SFNUI_AWS_PAGE_DEADLINE = 5.0
    assert 5.0 < stopping.duplicate_wait() <= 10.0


def test_a_bulk_stops_progress_counts_an_unknown_outcome_as_done(operator: Any) -> None:
    batch = BulkStop.objects.create(
        id=uuid.uuid4(), user=operator, username="oncall", description="x", count=2
    )
    for position, outcome in enumerate(["STOPPED", "UNKNOWN"]):
        ex = execution_row(status="RUNNING")
        attempt = StopRequest.objects.create(
            execution=ex, username="oncall", outcome=outcome, aws_response="..."
        )
        BulkStopItem.objects.create(
            batch=batch, execution=ex, position=position, stop_request=attempt
        )
    progress = bulk.progress(batch)
    assert progress == bulk.Progress(stopped=1, unknown=1)
    assert progress.done == 2
