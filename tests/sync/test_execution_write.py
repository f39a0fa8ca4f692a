"""What one execution's sync costs the database (issue 15, item 4), and that
the one write it makes keeps every guarantee: a row changed while the calls
were out is described again, a flag set meanwhile is kept, the watchers of a
batch are looked for once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from executions import aws, budget, tasks
from executions.models import Definition, Execution, StateMachine, Watch
from executions.sync import flows
from tests.support.helpers import PASS, wait_until_finished
from tests.support.shared_redis import reachable_redis_url

pytestmark = pytest.mark.django_db

EXECUTIONS = 4


@pytest.fixture
def listed(
    make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any
) -> list[Execution]:
    """Closed executions, listed but not yet synced, whose definition is known
    (so that only the write under test touches their rows)."""
    sm_arn = make_state_machine("hello", PASS)
    arns = [start(sm_arn, f"hello-{i}") for i in range(EXECUTIONS)]
    wait_until_finished(sfn, arns)
    flows.discover_state_machines("us-east-1")
    flows.list_state_machine(StateMachine.objects.get(arn=sm_arn))
    known = Definition.objects.create(sha256="0" * 64, text="{}")
    Execution.objects.update(definition=known)
    return list(Execution.objects.order_by("pk"))


def _statements(queries: list[dict[str, Any]], verb: str, table: str) -> int:
    return sum(1 for q in queries if q["sql"].startswith(verb) and f'"{table}"' in q["sql"])


def test_each_execution_costs_one_insert_and_one_update_and_no_watch_query(
    listed: list[Execution],
) -> None:
    with CaptureQueriesContext(connection) as captured:
        stats = flows.sync_executions([ex.pk for ex in listed], "us-east-1")
    assert stats.executions_synced == EXECUTIONS
    queries = captured.captured_queries
    assert _statements(queries, "INSERT", "executions_historyevent") == EXECUTIONS
    assert _statements(queries, "UPDATE", "executions_execution") == EXECUTIONS
    # Nobody watches: one question for the batch, none per execution.
    assert sum(1 for q in queries if '"executions_watch"' in q["sql"]) == 1
    # Nothing else reads an execution's events (the completion takes the
    # final event's type from the page it came in).
    assert sum(1 for q in queries if 'FROM "executions_historyevent"' in q["sql"]) == 0
    for ex in Execution.objects.all():
        assert ex.history_complete
        assert not ex.needs_describe
        assert ex.sync_due_at is None
        assert ex.last_event_id > 0


def test_the_events_and_the_row_are_written_in_one_transaction(listed: list[Execution]) -> None:
    (ex, *_) = listed
    seen: list[tuple[str, bool]] = []

    def spy(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        # "INSERT OR IGNORE" on SQLite, "... ON CONFLICT DO NOTHING" on PostgreSQL.
        for verb, table in (
            ("INSERT", "executions_historyevent"),
            ("UPDATE", "executions_execution"),
        ):
            if sql.startswith(verb) and f'"{table}"' in sql:
                seen.append((verb, connection.in_atomic_block))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        flows.sync_executions([ex.pk], "us-east-1")
    assert seen == [("INSERT", True), ("UPDATE", True)]


def test_a_row_changed_while_the_calls_were_out_is_described_again(
    listed: list[Execution], monkeypatch: pytest.MonkeyPatch, sfn: Any
) -> None:
    (ex, *_) = listed
    real_history = aws.execution_history
    meddled: list[bool] = []

    def meddling(*args: Any, **kwargs: Any) -> Iterator[list[dict[str, Any]]]:
        if not meddled:
            # A listing (or a stop) changed the row under the sync.
            meddled.append(True)
            Execution.objects.filter(pk=ex.pk).update(status="ABORTED", error="not what AWS says")
        yield from real_history(*args, **kwargs)

    monkeypatch.setattr(aws, "execution_history", meddling)
    with aws.count_calls() as calls:
        flows.sync_executions([ex.pk], "us-east-1")
    ex.refresh_from_db()
    assert ex.status == sfn.describe_execution(executionArn=ex.arn)["status"] == "SUCCEEDED"
    assert ex.error is None
    assert ex.history_complete
    assert calls["DescribeExecution"] == 2


def test_a_flag_set_while_the_calls_were_out_is_kept_and_makes_it_due_now(
    listed: list[Execution], monkeypatch: pytest.MonkeyPatch
) -> None:
    (ex, *_) = listed
    Execution.objects.filter(pk=ex.pk).update(status="RUNNING")
    ex.refresh_from_db()
    real_history = aws.execution_history

    def flagging(*args: Any, **kwargs: Any) -> Iterator[list[dict[str, Any]]]:
        # What _learn_ends or a stop does: flag it, due now, status untouched.
        Execution.objects.filter(pk=ex.pk).update(needs_describe=True, sync_due_at=timezone.now())
        return real_history(*args, **kwargs)

    monkeypatch.setattr(aws, "execution_history", flagging)
    before = timezone.now()
    flows.sync_executions([ex.pk], "us-east-1")
    ex.refresh_from_db()
    assert ex.status == "SUCCEEDED"
    assert ex.needs_describe
    assert ex.sync_due_at is not None
    assert ex.sync_due_at <= timezone.now()
    assert ex.synced_at is not None
    assert ex.synced_at >= before


def test_a_row_made_due_while_the_calls_were_out_stays_due(listed: list[Execution]) -> None:
    (ex, *_) = listed
    flows.sync_executions([ex.pk], "us-east-1")
    ex.refresh_from_db()
    assert ex.sync_due_at is None
    later = timezone.now() + dt.timedelta(minutes=2)
    Execution.objects.filter(pk=ex.pk).update(sync_due_at=later)
    # Nothing touched it since it was read: the sync sets the next due time.
    flows.sync_executions([ex.pk], "us-east-1")
    ex.refresh_from_db()
    assert ex.sync_due_at is None


def test_a_batch_asks_once_who_watches_and_tells_only_the_watched(
    listed: list[Execution],
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    watched = listed[1]
    user = get_user_model().objects.create_user("watcher")
    Watch.objects.create(execution=watched, user=user, username="watcher")
    sent: list[int] = []
    monkeypatch.setattr(tasks.notify_watchers, "delay", sent.append)
    with django_capture_on_commit_callbacks(execute=True):
        flows.sync_executions([ex.pk for ex in listed], "us-east-1")
    assert sent == [watched.pk]


@pytest.mark.parametrize("store", ["configured", "redis"])
def test_a_batch_whose_budget_runs_out_part_way_leaves_the_rest_for_later(
    listed: list[Execution], store: str, settings: Any
) -> None:
    if store == "redis" and not settings.REDIS_URL:
        settings.REDIS_URL = reachable_redis_url()
    # Two DescribeExecution tokens, none more for a thousand seconds.
    settings.SFNUI_API_QUOTAS = {**settings.SFNUI_API_QUOTAS, "DescribeExecution": (2, 0.001)}
    settings.SFNUI_API_SHARE = 1.0
    if settings.REDIS_URL:
        # A full bucket to start with, whatever an earlier run left in this Redis.
        store_of = budget._store()
        assert isinstance(store_of, budget._RedisStore)
        store_of.client.delete(f"sfnui:{budget.bucket('us-east-1', 'DescribeExecution').key}")
    settings.SFNUI_API_MAX_WAIT = 0.5
    with aws.count_calls() as calls:
        stats = flows.sync_executions([ex.pk for ex in listed], "us-east-1")
    assert calls["DescribeExecution"] == 2
    assert stats.executions_synced == 2
    assert stats.throttled
    done = set(Execution.objects.filter(history_complete=True).values_list("pk", flat=True))
    assert len(done) == 2
    assert set(stats.unfinished) == {ex.pk for ex in listed} - done
    for ex in Execution.objects.exclude(pk__in=done):
        # Due again once the budget may have refilled, untouched otherwise.
        assert ex.needs_describe
        assert ex.sync_due_at is not None
        assert ex.sync_due_at > timezone.now()


def test_the_events_insert_names_the_models_table_and_every_column() -> None:
    from executions.models import HistoryEvent
    from executions.sync import execution_write

    columns = [f.column for f in HistoryEvent._meta.concrete_fields if not f.primary_key]
    assert f'INSERT INTO "{HistoryEvent._meta.db_table}" ' in execution_write.INSERT_EVENTS
    for column in columns:
        # Inserted, selected and typed in the record: three times each.
        assert execution_write.INSERT_EVENTS.count(f'"{column}"') == 3, column


def test_events_stored_as_one_json_array_are_the_rows_bulk_create_stores(
    listed: list[Execution],
) -> None:
    """PostgreSQL's path (jsonb_to_recordset) against Django's bulk_create, on
    events with every kind of value AWS sends in their details."""
    from executions.models import HistoryEvent
    from executions.sync.execution_write import ExecutionWrite
    from executions.sync.rows import stored_event

    if connection.vendor != "postgresql":
        pytest.skip("SQLite stores the events with bulk_create itself")
    when = dt.datetime(2026, 12, 4, 10, 0, 0, 123456, tzinfo=dt.UTC)
    events: list[dict[str, Any]] = [
        {
            "id": 1,
            "timestamp": when,
            "type": "ExecutionStarted",
            "previousEventId": 0,
            "executionStartedEventDetails": {
                "input": '{"orderId": "ord-1", "emoji": "\u2603"}',
                "inputDetails": {"truncated": False},
                "roleArn": "arn:aws:iam::123456789012:role/r",
            },
        },
        {
            "id": 2,
            "timestamp": when + dt.timedelta(seconds=1),
            "type": "PassStateEntered",
            "previousEventId": 1,
            "stateEnteredEventDetails": {"name": 'quote " back\\slash \x00 nul', "input": "null"},
        },
        {
            "id": 3,
            "timestamp": when.astimezone(dt.timezone(dt.timedelta(hours=2))),
            "type": "TaskFailed",
            "previousEventId": 2,
            "taskFailedEventDetails": {
                "error": "States.ALL",
                "cause": "x" * 5000,
                "nested": [1, 2.5, -3, 10**15, None, True, {"k": []}],
            },
        },
        {"id": 4, "timestamp": when, "type": "ExecutionSucceeded", "previousEventId": 3},
    ]
    ours, theirs = listed[0], listed[1]
    write = ExecutionWrite(ours)
    write.add_events(events)
    write.add_events([])
    write.store()
    HistoryEvent.objects.bulk_create([stored_event(theirs.pk, e) for e in events])

    def rows(ex: Execution) -> list[tuple[Any, ...]]:
        return list(
            HistoryEvent.objects.filter(execution=ex)
            .order_by("event_id")
            .values_list(
                "event_id", "previous_event_id", "timestamp", "type", "details_key", "details"
            )
        )

    assert len(rows(ours)) == 4
    assert rows(ours) == rows(theirs)
    # Stored twice: each event still once.
    again = ExecutionWrite(ours)
    again.add_events(events)
    again.store()
    assert len(rows(ours)) == 4
