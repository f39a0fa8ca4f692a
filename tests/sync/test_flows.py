"""The sync against moto in execute mode, behind the AWS-faithful layer (fakeaws).

The cache must equal what boto3 reads from the same endpoint, cost no calls
for settled executions, and stay correct when a sync runs twice, concurrently,
is killed halfway, is throttled, or meets a redrive.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.management import call_command

from executions import aws
from executions.models import Execution, HistoryEvent, StateMachine, SyncRun
from executions.sync import flows, runs
from tests.support.helpers import (
    FAIL,
    LONG_WAIT,
    ORDER_PIPELINE,
    PASS,
    PAYMENT,
    assert_cache_equals_aws,
    aws_events,
    cached_events,
    ticking,
    wait_for,
    wait_until_finished,
)

pytestmark = pytest.mark.django_db


def snapshot() -> dict[str, Any]:
    """Every synced row, without the bookkeeping times that differ between runs."""
    return {
        "state_machines": list(
            StateMachine.objects.order_by("arn").values(
                "arn", "name", "type", "region", "account", "definition", "status"
            )
        ),
        "executions": list(
            Execution.objects.order_by("arn").values(
                "arn",
                "name",
                "state_machine__arn",
                "status",
                "start_date",
                "stop_date",
                "input",
                "output",
                "error",
                "cause",
                "redrive_count",
                "last_event_id",
                "history_complete",
                "needs_describe",
            )
        ),
        "events": list(
            HistoryEvent.objects.order_by("execution__arn", "event_id").values(
                "execution__arn",
                "event_id",
                "previous_event_id",
                "timestamp",
                "type",
                "details_key",
                "details",
            )
        ),
    }


def full_cycle() -> runs.Stats:
    """What `manage.py sync` does, as functions."""
    total = runs.Stats()
    total.merge(flows.discover_state_machines("us-east-1"))
    for sm in StateMachine.objects.all():
        total.merge(flows.list_state_machine(sm))
    due = Execution.objects.filter(sync_due_at__isnull=False).order_by("pk")
    total.merge(flows.sync_executions(list(due.values_list("pk", flat=True)), "us-east-1"))
    return total


@pytest.fixture
def finished_executions(
    make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> list[str]:
    order = make_state_machine("order-pipeline", ORDER_PIPELINE)
    payments = make_state_machine("payments", PAYMENT)
    fails = make_state_machine("fails", FAIL)
    hello = make_state_machine("hello", PASS)
    arns = [
        start(order, "order-1", {"items": [{"sku": "a"}, {"sku": "b"}, {"sku": "c"}]}),
        start(order, "order-2", {"items": []}),
        start(payments, "pay-1", {"amount": 12}),
        start(fails, "fail-1"),
        start(hello, "hello-1", {"<script>": "alert(1)"}),
    ]
    wait_until_finished(sfn, arns)
    return arns


# --- Tests -----------------------------------------------------------------------------


def test_a_full_sync_mirrors_every_field_and_event(
    finished_executions: list[str],
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    sfn: Any,
) -> None:
    runaway = start(make_state_machine("nightly-batch", LONG_WAIT), "nightly-1")

    stats = full_cycle()

    assert not stats.errors
    assert_cache_equals_aws(sfn, [*finished_executions, runaway])
    statuses = dict(Execution.objects.values_list("name", "status"))
    assert statuses == {
        "order-1": "SUCCEEDED",
        "order-2": "FAILED",
        "pay-1": "FAILED",
        "fail-1": "FAILED",
        "hello-1": "SUCCEEDED",
        "nightly-1": "RUNNING",
    }
    # The failing task was retried and then caught: both attempts are stored.
    pay_types = list(
        HistoryEvent.objects.filter(execution__name="pay-1")
        .order_by("event_id")
        .values_list("type", flat=True)
    )
    assert pay_types.count("TaskFailed") == 2
    assert pay_types[-1] == "ExecutionFailed"
    # Closed executions are complete; the running one is due again.
    done = Execution.objects.exclude(name="nightly-1")
    assert all(ex.history_complete and ex.sync_due_at is None for ex in done)
    nightly = Execution.objects.get(name="nightly-1")
    assert not nightly.history_complete
    assert nightly.sync_due_at is not None
    assert StateMachine.objects.get(name="order-pipeline").definition.startswith("{")


def test_a_second_sync_of_settled_executions_costs_no_describe_or_history_call(
    finished_executions: list[str],
) -> None:
    first = full_cycle()
    assert first.calls["DescribeExecution"] == len(finished_executions)
    assert first.calls["GetExecutionHistory"] == len(finished_executions)

    second = full_cycle()

    assert second.calls["DescribeExecution"] == 0
    assert second.calls["GetExecutionHistory"] == 0
    assert second.calls["DescribeStateMachine"] == 0
    # One ListExecutions per state machine finds that nothing is new; none of
    # them has running executions, so no ListExecutions(RUNNING).
    assert second.calls["ListExecutions"] == StateMachine.objects.count()
    assert second.executions_new == second.executions_changed == second.events == 0


def test_a_second_sync_of_a_running_execution_fetches_only_the_new_events(
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    sfn: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(flows, "HISTORY_PAGE_SIZE", 4)
    arn = start(make_state_machine("ticker", ticking(30)), "tick-1")
    wait_for(lambda: len(aws_events(sfn, arn)) >= 12)
    full_cycle()
    ex = Execution.objects.get(arn=arn)
    assert ex.status == "RUNNING"
    before = ex.last_event_id
    assert HistoryEvent.objects.filter(execution=ex).count() == before

    wait_for(lambda: len(aws_events(sfn, arn)) >= before + 6)
    fetched: list[int] = []
    real_history = aws.execution_history

    def spying(*args: Any, **kwargs: Any) -> Iterator[list[dict[str, Any]]]:
        for page in real_history(*args, **kwargs):
            fetched.extend(event["id"] for event in page)
            yield page

    monkeypatch.setattr(aws, "execution_history", spying)
    stats = runs.Stats()
    with aws.count_calls() as calls:
        flows.sync_execution(Execution.objects.get(arn=arn), stats)

    ex.refresh_from_db()
    new = ex.last_event_id - before
    assert new >= 6
    assert stats.events == new
    assert calls["DescribeExecution"] == 0  # still running: nothing to describe
    # Newest first, and it stopped at the first page that reached known events.
    assert fetched == sorted(fetched, reverse=True)
    assert min(fetched) > before - 4
    assert calls["GetExecutionHistory"] == -(-(len(fetched)) // 4)
    assert [e["id"] for e in cached_events(arn)] == list(range(1, ex.last_event_id + 1))


def test_syncing_twice_gives_identical_rows(finished_executions: list[str]) -> None:
    full_cycle()
    first = snapshot()
    Execution.objects.update(
        needs_describe=True, history_complete=False, sync_due_at=dt.datetime.now(dt.UTC)
    )
    full_cycle()
    assert snapshot() == first


def test_two_interleaved_syncs_give_identical_rows(
    finished_executions: list[str], sfn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flows, "HISTORY_PAGE_SIZE", 3)
    real_history = aws.execution_history
    nested = {"done": False}

    def interleaving(*args: Any, **kwargs: Any) -> Iterator[list[dict[str, Any]]]:
        for page in real_history(*args, **kwargs):
            yield page
            if not nested["done"]:
                # A second sync runs to the end between two pages of the first.
                nested["done"] = True
                full_cycle()

    monkeypatch.setattr(aws, "execution_history", interleaving)
    full_cycle()
    assert nested["done"]
    interleaved = snapshot()
    assert_cache_equals_aws(sfn, finished_executions)

    Execution.objects.all().delete()
    StateMachine.objects.all().delete()
    monkeypatch.setattr(aws, "execution_history", real_history)
    full_cycle()
    assert snapshot() == interleaved


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no except clause sees it."""


def test_a_sync_killed_after_its_first_history_page_resumes_correctly(
    finished_executions: list[str], sfn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flows, "HISTORY_PAGE_SIZE", 3)
    real_history = aws.execution_history

    def dying(*args: Any, **kwargs: Any) -> Iterator[list[dict[str, Any]]]:
        pages = real_history(*args, **kwargs)
        yield next(pages)
        yield next(pages)
        raise Killed

    monkeypatch.setattr(aws, "execution_history", dying)
    with pytest.raises(Killed):
        full_cycle()
    # The one it was syncing has its newest page stored (the second was held
    # for the final transaction, which never came), but neither its
    # description nor the watermark moved past the gap below it.
    (half,) = Execution.objects.filter(events__isnull=False).distinct()
    assert half.last_event_id == 0
    assert half.described_at is None
    assert HistoryEvent.objects.filter(execution=half).count() == 3

    monkeypatch.setattr(aws, "execution_history", real_history)
    full_cycle()
    assert_cache_equals_aws(sfn, finished_executions)
    assert all(Execution.objects.values_list("history_complete", flat=True))


def test_a_listing_killed_after_its_first_page_is_redone_without_gaps(
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    sfn: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sm_arn = make_state_machine("hello", PASS)
    arns = [start(sm_arn, f"hello-{i}") for i in range(7)]
    wait_until_finished(sfn, arns)
    flows.discover_state_machines("us-east-1")
    sm = StateMachine.objects.get(arn=sm_arn)
    real_list = aws.list_executions

    def dying(*args: Any, **kwargs: Any) -> Iterator[list[dict[str, Any]]]:
        pages = real_list(*args, **{**kwargs, "page_size": 3})
        yield next(pages)
        raise Killed

    monkeypatch.setattr(aws, "list_executions", dying)
    with pytest.raises(Killed):
        flows.list_state_machine(sm)
    assert Execution.objects.count() == 3
    sm.refresh_from_db()
    assert sm.list_watermark is None

    monkeypatch.setattr(
        aws, "list_executions", lambda *a, **k: real_list(*a, **{**k, "page_size": 3})
    )
    flows.list_state_machine(sm)
    assert set(Execution.objects.values_list("arn", flat=True)) == set(arns)


def test_throttling_slows_the_sync_down_and_loses_nothing(
    finished_executions: list[str], fake_aws: Any, sfn: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_aws.app.configure(
        faults={
            "throttle_for_seconds": 2.5,
            "throttle_operations": ["ListExecutions", "DescribeExecution", "GetExecutionHistory"],
        }
    )
    started = time.monotonic()

    call_command("sync")

    assert time.monotonic() - started >= 2.5  # it waited for AWS, rather than failing
    throttled = fake_aws.post("/fakeaws/calls", {})["throttled"]
    assert sum(throttled.values()) > 0
    assert SyncRun.objects.filter(throttled=True).exists()
    fake_aws.app.configure(faults={})
    assert_cache_equals_aws(sfn, finished_executions)
    assert "total" in capsys.readouterr().out


def test_a_redriven_execution_is_reopened_and_its_new_events_fetched(
    make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any, fake_aws: Any
) -> None:
    arn = start(make_state_machine("fails", FAIL), "fail-1")
    wait_until_finished(sfn, [arn])
    full_cycle()
    ex = Execution.objects.get(arn=arn)
    assert ex.status == "FAILED"
    assert ex.history_complete
    failed_events = ex.last_event_id

    sfn.redrive_execution(executionArn=arn)
    with aws.count_calls() as calls:
        full_cycle()
    ex.refresh_from_db()
    assert ex.status == "RUNNING"
    assert ex.redrive_count == 1
    assert not ex.history_complete
    assert calls["DescribeExecution"] == 1
    assert ex.last_event_id == failed_events + 1
    assert (
        HistoryEvent.objects.get(execution=ex, event_id=ex.last_event_id).type
        == "ExecutionRedriven"
    )

    fake_aws.app.finish(
        arn,
        "SUCCEEDED",
        [
            {
                "type": "PassStateEntered",
                "stateEnteredEventDetails": {"name": "Check", "input": "{}"},
            },
            {
                "type": "PassStateExited",
                "stateExitedEventDetails": {"name": "Check", "output": "{}"},
            },
            {
                "type": "ExecutionSucceeded",
                "executionSucceededEventDetails": {"output": '{"ok":1}'},
            },
        ],
        output='{"ok":1}',
    )
    full_cycle()
    ex.refresh_from_db()
    assert ex.status == "SUCCEEDED"
    assert ex.output == '{"ok":1}'
    assert ex.history_complete
    assert_cache_equals_aws(sfn, [arn])


def test_an_execution_that_ended_is_found_by_the_running_listing(
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    sfn: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(flows, "LISTING_MARGIN", dt.timedelta(0))
    sm = make_state_machine("nightly-batch", LONG_WAIT)
    oldest = start(sm, "nightly-1")
    start(sm, "nightly-2")
    start(sm, "nightly-3")
    full_cycle()
    assert set(Execution.objects.values_list("status", flat=True)) == {"RUNNING"}
    sfn.stop_execution(executionArn=oldest, error="Manual", cause="stopped by the test")
    time.sleep(0.2)
    # One execution a page, so that the listing of new executions stops
    # before it reaches the oldest one: only ListExecutions(RUNNING) can tell
    # that it ended.
    real_list = aws.list_executions
    monkeypatch.setattr(
        aws, "list_executions", lambda *a, **k: real_list(*a, **{**k, "page_size": 1})
    )

    with aws.count_calls() as calls:
        stats = full_cycle()

    assert stats.executions_changed == 1
    # Two pages of new ones, two of the running set, then every status newest
    # first down to the one that left it (three pages of one): its status and
    # stop date come from the listing.
    assert calls["ListExecutions"] == 7
    assert stats.ends_listed == 1
    # Its error and cause (and output) from DescribeExecution, after the status.
    assert calls["DescribeExecution"] == 1
    ex = Execution.objects.get(arn=oldest)
    assert (ex.status, ex.error, ex.cause) == ("ABORTED", "Manual", "stopped by the test")
    assert ex.history_complete
    assert_cache_equals_aws(sfn, [oldest])


def test_an_execution_aws_does_not_know_yet_is_retried_later(
    make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any, fake_aws: Any
) -> None:
    arn = start(make_state_machine("hello", PASS), "hello-1")
    wait_until_finished(sfn, [arn])
    fake_aws.app.configure(faults={"describe_lag_seconds": 3600})
    full_cycle()
    ex = Execution.objects.get(arn=arn)
    assert ex.needs_describe
    assert "does not know" in ex.sync_error
    assert ex.sync_due_at is not None  # kept, and retried with backoff
    assert ex.sync_failures == 1

    fake_aws.app.configure(faults={})
    Execution.objects.filter(pk=ex.pk).update(sync_due_at=dt.datetime.now(dt.UTC))
    full_cycle()
    ex.refresh_from_db()
    assert (ex.sync_error, ex.sync_failures, ex.history_complete) == ("", 0, True)
    assert_cache_equals_aws(sfn, [arn])


def test_a_deleted_state_machine_is_marked_and_its_executions_kept(
    finished_executions: list[str], sfn: Any
) -> None:
    full_cycle()
    hello = StateMachine.objects.get(name="hello")
    sfn.delete_state_machine(stateMachineArn=hello.arn)
    full_cycle()
    hello.refresh_from_db()
    assert hello.status == "DELETED"
    assert hello.executions.count() == 1


def test_importing_an_unknown_execution_describes_it_once_and_syncs_its_history(
    finished_executions: list[str], sfn: Any
) -> None:
    arn = finished_executions[0]
    with aws.count_calls() as calls:
        ex = flows.import_execution(arn)
    assert calls["DescribeExecution"] == 1
    assert calls["GetExecutionHistory"] == 1
    assert ex.history_complete
    assert_cache_equals_aws(sfn, [arn])
    assert SyncRun.objects.filter(kind="lookup", ok=True).count() == 1


def test_importing_an_execution_aws_does_not_know_raises_not_found(fake_aws: Any) -> None:
    with pytest.raises(aws.NotFound):
        flows.import_execution("arn:aws:states:us-east-1:123456789012:execution:nope:never")
    assert not Execution.objects.exists()
    assert SyncRun.objects.get(kind="lookup").error.startswith("not found")
