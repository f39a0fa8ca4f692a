"""The counts per state machine, status and hour that the database keeps
(executions/database/counts.py): after any write to the executions table they
equal a COUNT of the table, before and after compacting."""

from __future__ import annotations

import datetime as dt
import io
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection, transaction
from django.db.models import Count
from django.db.models.functions import Trunc
from django.utils import timezone

from executions.database import counts
from executions.models import (
    OPEN_STATUSES,
    Execution,
    ExecutionCount,
    ExecutionCountDelta,
    StateMachine,
)
from executions.reads import activity
from tests.support.factories import execution_row, state_machine_row
from tests.support.helpers import FAIL, PASS, wait_until_finished

pytestmark = pytest.mark.django_db

Key = tuple[int, str, str, dt.datetime]


def expected(now: dt.datetime) -> Counter[Key]:
    """What the counts should hold: COUNT(*) of the executions table."""
    keep_from = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(
        hours=counts.HOURS_KEPT
    )
    out: Counter[Key] = Counter()
    for row in Execution.objects.values("state_machine_id", "status").annotate(n=Count("id")):
        out[row["state_machine_id"], "total", row["status"], counts.TOTAL_HOUR] = row["n"]
    for kind, column, rows in (
        ("started", "start_date", Execution.objects.all()),
        (
            "closed",
            "stop_date",
            Execution.objects.exclude(status__in=OPEN_STATUSES).filter(stop_date__isnull=False),
        ),
    ):
        hourly = (
            rows.filter(**{f"{column}__gte": keep_from})
            .annotate(hour=Trunc(column, "hour", tzinfo=dt.UTC))
            .values("state_machine_id", "status", "hour")
            .annotate(n=Count("id"))
        )
        for row in hourly:
            out[row["state_machine_id"], kind, row["status"], row["hour"]] = row["n"]
    return out


def kept(now: dt.datetime) -> Counter[Key]:
    """The counts plus the deltas not yet folded in, without zeros and
    without the hours older than HOURS_KEPT (nobody reads those)."""
    keep_from = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(
        hours=counts.HOURS_KEPT
    )
    out: Counter[Key] = Counter()
    columns = ("state_machine_id", "kind", "status", "hour", "n")
    for model in (ExecutionCount, ExecutionCountDelta):
        for sm_id, kind, status, hour, n in model.objects.values_list(*columns):
            if kind == "total" or hour >= keep_from:
                out[sm_id, kind, status, hour.astimezone(dt.UTC)] += n
    return Counter({k: v for k, v in out.items() if v})


def assert_counts_equal_the_table() -> None:
    now = timezone.now()
    assert kept(now) == expected(now)
    counts.compact(connection, now)
    assert not ExecutionCountDelta.objects.exists()
    assert kept(now) == expected(now)


def test_inserts_are_counted_per_status_start_hour_and_stop_hour() -> None:
    sm = state_machine_row("orders")
    other = state_machine_row("payments")
    now = timezone.now()
    for i in range(3):
        execution_row(sm, status="SUCCEEDED", started=now - dt.timedelta(hours=i))
    execution_row(sm, status="FAILED", started=now - dt.timedelta(hours=2))
    execution_row(sm, status="RUNNING")
    execution_row(other, status="TIMED_OUT", started=now - dt.timedelta(days=30))
    total = ExecutionCount.objects.filter(kind="total")
    assert not total.exists()  # appended as deltas until compacted
    assert_counts_equal_the_table()
    assert dict(total.filter(state_machine_id=sm.pk).values_list("status", "n")) == {
        "SUCCEEDED": 3,
        "FAILED": 1,
        "RUNNING": 1,
    }
    # The month-old one is in the totals, not in the hours kept.
    assert not ExecutionCount.objects.filter(state_machine_id=other.pk, kind="started").exists()


def test_status_changes_one_by_one_and_many_at_once_move_the_counts() -> None:
    sm = state_machine_row()
    running = [execution_row(sm, status="RUNNING") for _ in range(5)]
    counts.compact(connection, timezone.now())
    running[0].status = "SUCCEEDED"
    running[0].stop_date = timezone.now()
    running[0].save()
    Execution.objects.filter(pk__in=[e.pk for e in running[1:3]]).update(
        status="FAILED", stop_date=timezone.now()
    )
    assert_counts_equal_the_table()
    # A write that changes none of the counted columns adds nothing.
    Execution.objects.update(synced_at=timezone.now(), sync_error="x")
    assert not ExecutionCountDelta.objects.exists()
    assert_counts_equal_the_table()


def test_a_redrive_reopens_then_closes_again() -> None:
    sm = state_machine_row()
    failed = execution_row(sm, status="FAILED", started=timezone.now() - dt.timedelta(hours=3))
    counts.compact(connection, timezone.now())
    # Redriven: running again, no stop date; later it succeeds.
    Execution.objects.filter(pk=failed.pk).update(status="RUNNING", stop_date=None, redrive_count=1)
    assert_counts_equal_the_table()
    assert not ExecutionCount.objects.filter(kind="closed", n__gt=0).exists()
    Execution.objects.filter(pk=failed.pk).update(status="SUCCEEDED", stop_date=timezone.now())
    assert_counts_equal_the_table()
    assert activity.machine_stats([sm.pk])[sm.pk].counts["SUCCEEDED"] == 1


def test_deletes_and_a_deleted_state_machine_take_their_executions_out() -> None:
    keep = state_machine_row("keep")
    gone = state_machine_row("gone")
    executions = [execution_row(keep) for _ in range(3)] + [execution_row(gone) for _ in range(4)]
    executions[0].delete()
    assert_counts_equal_the_table()
    StateMachine.objects.filter(pk=gone.pk).delete()
    assert_counts_equal_the_table()
    assert activity.machine_stats()[keep.pk].total == 2


def test_upserts_count_the_new_rows_and_the_changed_ones() -> None:
    """The sync writes with bulk_create(update_conflicts=True)."""
    sm = state_machine_row()
    old = execution_row(sm, name="old", status="RUNNING")
    started = timezone.now() - dt.timedelta(minutes=10)
    rows = [
        Execution(
            arn=old.arn,
            name="old",
            state_machine=sm,
            status="ABORTED",
            start_date=old.start_date,
            stop_date=timezone.now(),
        ),
        Execution(
            arn=old.arn.replace(":old", ":new"),
            name="new",
            state_machine=sm,
            status="RUNNING",
            start_date=started,
        ),
    ]
    for _ in range(2):  # the same page twice changes nothing the second time
        Execution.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["arn"],
            update_fields=["status", "stop_date"],
        )
        assert_counts_equal_the_table()
    assert activity.machine_stats([sm.pk])[sm.pk].counts["RUNNING"] == 1


def test_a_write_that_rolls_back_leaves_the_counts_as_they_were() -> None:
    sm = state_machine_row()
    execution_row(sm, status="RUNNING")
    counts.compact(connection, timezone.now())

    def close_all_then_fail() -> None:
        with transaction.atomic():
            Execution.objects.update(status="SUCCEEDED", stop_date=timezone.now())
            raise RuntimeError

    with pytest.raises(RuntimeError):
        close_all_then_fail()
    assert not ExecutionCountDelta.objects.exists()
    assert_counts_equal_the_table()


def test_compacting_twice_and_hours_that_age_out() -> None:
    sm = state_machine_row()
    now = timezone.now()
    execution_row(sm, status="SUCCEEDED", started=now - dt.timedelta(hours=1))
    assert counts.compact(connection, now) == 3  # total, started, closed
    assert counts.compact(connection, now) == 0
    assert_counts_equal_the_table()
    later = now + dt.timedelta(hours=counts.HOURS_KEPT + 2)
    with time_machine.travel(later, tick=False):
        counts.compact(connection, later)
        assert set(ExecutionCount.objects.values_list("kind", flat=True)) == {"total"}
        assert_counts_equal_the_table()


def test_rebuild_counts_what_the_table_holds() -> None:
    sm = state_machine_row()
    for status in ("RUNNING", "SUCCEEDED", "FAILED", "SUCCEEDED"):
        execution_row(sm, status=status)
    # A stray row (say, counted before a TRUNCATE) is gone after a rebuild.
    ExecutionCount.objects.create(
        state_machine_id=sm.pk, kind="total", status="SUCCEEDED", hour=counts.TOTAL_HOUR, n=99
    )
    counts.rebuild(connection, timezone.now())
    assert not ExecutionCountDelta.objects.exists()
    assert_counts_equal_the_table()


@pytest.mark.django_db(transaction=True)
def test_the_seeder_writes_counts_that_equal_the_table() -> None:
    call_command(
        "seed",
        "--executions",
        "400",
        "--with-history",
        "20",
        "--running",
        "15",
        stdout=io.StringIO(),
    )
    assert not ExecutionCountDelta.objects.exists()  # paused while it wrote, then rebuilt
    assert_counts_equal_the_table()
    # The triggers are back on afterwards.
    Execution.objects.filter(status="RUNNING").update(status="SUCCEEDED", stop_date=timezone.now())
    assert ExecutionCountDelta.objects.exists()
    assert_counts_equal_the_table()


def test_a_sync_that_runs_twice_and_a_redrive_keep_them_equal(
    make_state_machine: Callable[..., str], start: Callable[..., str], sfn: Any, fake_aws: Any
) -> None:
    from executions.sync import flows, runs

    def cycle() -> None:
        stats = runs.Stats()
        stats.merge(flows.discover_state_machines("us-east-1"))
        for sm in StateMachine.objects.all():
            stats.merge(flows.list_state_machine(sm))
        due = Execution.objects.filter(sync_due_at__isnull=False).order_by("pk")
        flows.sync_executions(list(due.values_list("pk", flat=True)), "us-east-1")

    fails = make_state_machine("fails", FAIL)
    arns = [start(fails, "fail-1"), start(make_state_machine("hello", PASS), "hello-1")]
    wait_until_finished(sfn, arns)
    cycle()
    cycle()
    assert_counts_equal_the_table()
    sfn.redrive_execution(executionArn=arns[0])
    cycle()
    assert Execution.objects.get(arn=arns[0]).redrive_count == 1
    assert_counts_equal_the_table()


def test_beat_folds_the_changes_every_minute(settings: Any) -> None:
    from executions import tasks

    execution_row(state_machine_row(), status="RUNNING")
    assert tasks.compact_counts() == 2  # total and started
    assert not ExecutionCountDelta.objects.exists()
    entry = settings.CELERY_BEAT_SCHEDULE["compact-counts"]
    assert (entry["task"], entry["schedule"]) == ("executions.tasks.compact_counts", 60.0)
    assert_counts_equal_the_table()


def test_rebuild_and_compact_work_with_sql_logging_on(settings: Any) -> None:
    """DEBUG on (the development default) formats each statement with its
    parameters for the log: a literal % must survive it."""
    settings.DEBUG = True
    execution_row(state_machine_row(), status="SUCCEEDED")
    connection.force_debug_cursor = True
    try:
        counts.rebuild(connection, timezone.now())
        counts.compact(connection, timezone.now())
    finally:
        connection.force_debug_cursor = False
    assert_counts_equal_the_table()
