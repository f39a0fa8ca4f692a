"""The state a failure happened in (Execution.failed_state, what /failures/
groups by): written by the sync with the history's last event, and filled by
`manage.py backfill_failed_states` for what was cached before."""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command

from executions.models import Execution, StateMachine
from tests.support.factories import events, execution_row, state_machine_row
from tests.support.helpers import FAIL, LONG_WAIT, PASS, wait_until_finished
from tests.sync.test_flows import full_cycle

pytestmark = pytest.mark.django_db


def test_the_sync_records_the_state_each_failure_happened_in(
    make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> None:
    finished = [
        start(make_state_machine("fails", FAIL), "fail-1"),
        start(make_state_machine("hello", PASS), "hello-1"),
    ]
    stuck = start(make_state_machine("nightly", LONG_WAIT), "nightly-1")
    wait_until_finished(sfn, finished)
    full_cycle()
    assert Execution.objects.get(name="nightly-1").failed_state == ""
    sfn.stop_execution(executionArn=stuck, error="Ops.Stopped", cause="stuck")

    stats = full_cycle()

    assert not stats.errors
    states = dict(Execution.objects.values_list("name", "failed_state"))
    assert states == {
        # The Fail state it ended in.
        "fail-1": "Boom",
        "hello-1": "",
        # Stopped while it waited.
        "nightly-1": "Sleep",
    }


def _failed_with_history(sm: StateMachine, name: str, state: str | None) -> Execution:
    ex = execution_row(sm, name, "FAILED", error="Order.Bad", cause="no items")
    items: list[tuple[str, str, dict[str, Any] | None]] = [
        ("ExecutionStarted", "executionStartedEventDetails", {"input": "{}"})
    ]
    if state is not None:
        items += [
            ("TaskStateEntered", "stateEnteredEventDetails", {"name": state}),
            ("TaskFailed", "taskFailedEventDetails", {"error": "Order.Bad", "cause": "no items"}),
        ]
    items.append(("ExecutionFailed", "executionFailedEventDetails", {"error": "Order.Bad"}))
    events(ex, items)
    return ex


def test_the_backfill_fills_failures_cached_before_and_only_those() -> None:
    sm = state_machine_row("orders")
    _failed_with_history(sm, "old-failure", "Validate")
    _failed_with_history(sm, "no-state", None)
    known = _failed_with_history(sm, "known", "Validate")
    Execution.objects.filter(pk=known.pk).update(failed_state="Charge")
    succeeded = execution_row(sm, "fine", "SUCCEEDED")
    events(succeeded, [("TaskStateEntered", "stateEnteredEventDetails", {"name": "Validate"})])
    # Its history is not complete yet: the sync will record it.
    partial = _failed_with_history(sm, "partial", "Validate")
    Execution.objects.filter(pk=partial.pk).update(history_complete=False)
    out = StringIO()

    call_command("backfill_failed_states", stdout=out)

    states = dict(Execution.objects.values_list("name", "failed_state"))
    assert states == {
        "old-failure": "Validate",
        "no-state": "",
        "known": "Charge",
        "fine": "",
        "partial": "",
    }
    assert "Filled the failing state of 1 execution; 1 names no state" in out.getvalue()

    again = StringIO()
    call_command("backfill_failed_states", stdout=again)
    assert "Filled the failing state of 0 executions" in again.getvalue()
