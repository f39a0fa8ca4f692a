from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from executions.history import progress
from executions.models import Execution
from executions.sync import flows
from tests.support import factories
from tests.support.helpers import FAIL, LONG_WAIT, ORDER_PIPELINE, PAYMENT, wait_until_finished

pytestmark = pytest.mark.django_db


def _synced(arn: str) -> Execution:
    return flows.import_execution(arn)


def test_a_running_execution_is_in_its_wait_state(
    make_state_machine: Callable[..., str], start: Callable[..., str]
) -> None:
    ex = _synced(start(make_state_machine("nightly", LONG_WAIT), "n-1"))
    (state,) = progress.open_states(ex)
    assert (state.name, state.type, state.visits_open) == ("Sleep", "WaitStateEntered", 1)
    assert progress.failure_point(ex) is None


def test_a_finished_execution_is_in_no_state(
    make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    arn = start(make_state_machine("orders", ORDER_PIPELINE), "o-1", {"items": [1, 2]})
    wait_until_finished(sfn, [arn])
    ex = _synced(arn)
    assert ex.status == "SUCCEEDED"
    assert progress.open_states(ex) == []
    assert progress.failure_point(ex) is None


def test_a_fail_state_is_where_it_failed(
    make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    arn = start(make_state_machine("fails", FAIL), "f-1")
    wait_until_finished(sfn, [arn])
    point = progress.failure_point(_synced(arn))
    assert point is not None
    assert (point.state_name, point.event_type) == ("Boom", "FailStateEntered")
    assert (point.error, point.cause) == ("Order.Invalid", "the order has no items")


def test_a_caught_task_failure_points_at_the_task_failure(
    make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    arn = start(make_state_machine("payments", PAYMENT), "p-1")
    wait_until_finished(sfn, [arn])
    ex = _synced(arn)
    point = progress.failure_point(ex)
    assert point is not None
    # The execution ended in the Fail state the Catch led to...
    assert point.state_name == "Declined"
    assert point.error == "Payment.Declined"
    assert ex.events.get(event_id=point.event_id).type == "FailStateEntered"
    # ...and the failure the Catch handled is named too.
    assert point.caught is not None
    assert (point.caught.state_name, point.caught.event_type) == ("Charge", "TaskFailed")
    assert point.caught.error == "DynamoDB.ResourceNotFoundException"


def test_an_aborted_execution_points_at_the_state_it_was_in(
    make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    arn = start(make_state_machine("nightly", LONG_WAIT), "n-1")
    sfn.stop_execution(executionArn=arn, error="Oncall", cause="runaway")
    wait_until_finished(sfn, [arn])
    point = progress.failure_point(_synced(arn))
    assert point is not None
    assert (point.state_name, point.event_type) == ("Sleep", "ExecutionAborted")
    assert (point.error, point.cause) == ("Oncall", "runaway")


def test_an_execution_stopped_in_a_task_points_at_the_aborted_task() -> None:
    """AWS ends the state it stops with TaskStateAborted (or WaitStateAborted)
    before ExecutionAborted. The failure point's list of failure types once
    lacked those two, and pointed at the execution's end instead."""
    ex = factories.execution_row(status="ABORTED", error="Oncall", cause="runaway")
    factories.events(
        ex,
        [
            ("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"}),
            ("TaskStateEntered", "stateEnteredEventDetails", {"name": "Charge", "input": "{}"}),
            ("TaskScheduled", "taskScheduledEventDetails", {"resource": "getItem"}),
            ("TaskStarted", "taskStartedEventDetails", {"resource": "getItem"}),
            ("TaskStateAborted", "", None),
            ("ExecutionAborted", "executionAbortedEventDetails", {"error": "Oncall"}),
        ],
    )
    point = progress.failure_point(ex)
    assert point is not None
    assert (point.state_name, point.event_id, point.event_type) == ("Charge", 5, "TaskStateAborted")
    assert (point.error, point.cause) == ("Oncall", "runaway")
