"""The sync of Distributed Map runs and their children (executions/sync/map_runs.py)."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from executions import aws
from executions.models import Execution, MapRun, StateMachine
from executions.sync import flows, map_runs, runs
from tests.support.helpers import LONG_WAIT

pytestmark = pytest.mark.django_db

# The parent's definition names its distributed Map and the children's type.
PARENT = {
    "StartAt": "Wait",
    "States": {
        "Wait": {"Type": "Wait", "Seconds": 3600, "Next": "Items"},
        "Items": {
            "Type": "Map",
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
                "StartAt": "P",
                "States": {"P": {"Type": "Pass", "End": True}},
            },
            "End": True,
        },
    },
}


def items(n: int, seconds: float, failing: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    return [{"seconds": seconds, "fail": i in failing} for i in range(n)]


@pytest.fixture
def parent(make_state_machine: Callable[..., str], start: Callable[..., str]) -> str:
    return start(make_state_machine("etl", LONG_WAIT), "run-1")


def sync(run: MapRun) -> tuple[runs.Stats, dict[str, int]]:
    stats = runs.Stats()
    with aws.count_calls() as calls:
        map_runs.sync_map_run(MapRun.objects.get(pk=run.pk), stats)
    return stats, dict(calls)


def test_a_parents_history_makes_the_map_run_and_its_sync_lists_the_children(
    fake_aws: Any, parent: str
) -> None:
    fake = fake_aws.app.map_runs.create(
        parent,
        items(5, 1, failing=(2,)) + items(3, 600),
        tolerated_failure_count=2,
        start=time.time() - 10,
    )
    ex = flows.import_execution(parent)
    run = MapRun.objects.get(arn=fake.arn)
    assert run.execution_id == ex.pk
    assert run.sync_due_at is not None

    _, calls = sync(run)
    assert calls == {"DescribeMapRun": 1, "ListExecutions": 1}
    run.refresh_from_db()
    assert run.status == "RUNNING"
    assert run.tolerated_failure_count == 2
    assert run.item_counts["failed"] == 1
    children = Execution.objects.filter(map_run_arn=run.arn)
    assert children.count() == 8
    assert set(children.values_list("status", flat=True)) == {"SUCCEEDED", "FAILED", "RUNNING"}
    child_sm = StateMachine.objects.get(arn=fake.state_machine_arn)
    assert child_sm.name == "etl/Map"
    assert child_sm.list_due_at is None  # never listed on its own
    assert run.children_watermark is not None


def test_the_children_listing_is_incremental_and_learns_ends_from_the_running_set(
    fake_aws: Any, parent: str
) -> None:
    fake = fake_aws.app.map_runs.create(parent, items(4, 600), max_concurrency=2)
    flows.import_execution(parent)
    run = MapRun.objects.get(arn=fake.arn)
    sync(run)
    assert Execution.objects.filter(map_run_arn=run.arn).count() == 2
    # The running children end (moved back in time), two more start.
    for child in fake.children[:2]:
        child.seconds = 0.001
    _, calls = sync(run)
    # One page of new children (stopping at the watermark) and the running set.
    assert calls == {"DescribeMapRun": 1, "ListExecutions": 2}
    cached = Execution.objects.filter(map_run_arn=run.arn)
    assert cached.count() == 4
    # The two that ended: their new status from the listing, and flagged for
    # DescribeExecution (output, error); the two new ones are running.
    ended = cached.filter(arn__in=[c.arn for c in fake.children[:2]])
    assert {(e.status, e.needs_describe) for e in ended} == {("SUCCEEDED", True)}
    assert cached.filter(status="RUNNING").count() == 2


def test_a_settled_map_run_costs_no_calls(fake_aws: Any, parent: str) -> None:
    fake = fake_aws.app.map_runs.create(parent, items(3, 1), start=time.time() - 30)
    flows.import_execution(parent)
    run = MapRun.objects.get(arn=fake.arn)
    sync(run)
    run.refresh_from_db()
    assert run.status == "SUCCEEDED"
    assert run.sync_due_at is None
    assert MapRun.objects.filter(sync_due_at__isnull=False).count() == 0
    assert map_runs.claim_due(timezone.now() + dt.timedelta(hours=1)) == []


def test_claim_due_stays_within_the_describe_map_run_budget(
    fake_aws: Any, parent: str, settings: Any
) -> None:
    ex = flows.import_execution(parent)
    now = timezone.now()
    MapRun.objects.bulk_create(
        [
            MapRun(
                arn=f"arn:aws:states:us-east-1:123456789012:mapRun:etl/Map:{i}",
                execution=ex,
                status="RUNNING",
                start_date=now,
                sync_due_at=now,
            )
            for i in range(30)
        ]
    )
    settings.SFNUI_API_QUOTAS = {**settings.SFNUI_API_QUOTAS, "DescribeMapRun": (10.0, 1.0)}
    settings.SFNUI_API_SHARE = 0.5
    claimed = map_runs.claim_due(now)
    assert sum(len(pks) for _, _, pks in claimed) == 5
    # The claimed ones are leased; the next tick takes others.
    again = map_runs.claim_due(now)
    first = {pk for _, _, pks in claimed for pk in pks}
    assert not first & {pk for _, _, pks in again for pk in pks}


def test_throttling_reschedules_and_errors_back_off(
    fake_aws: Any, parent: str, settings: Any
) -> None:
    fake = fake_aws.app.map_runs.create(parent, items(2, 600))
    flows.import_execution(parent)
    run = MapRun.objects.get(arn=fake.arn)
    fake_aws.post(
        "/fakeaws/config",
        {"faults": {"throttle_for_seconds": 60, "throttle_operations": ["DescribeMapRun"]}},
    )
    with pytest.raises(aws.Throttled):
        sync(run)
    run.refresh_from_db()
    assert run.sync_due_at is not None
    assert run.sync_due_at > timezone.now()
    assert run.sync_error == ""
    fake_aws.post("/fakeaws/config", {"faults": {}})
    MapRun.objects.filter(pk=run.pk).update(arn=run.arn + "-gone")
    sync(MapRun.objects.get(pk=run.pk))
    gone = MapRun.objects.get(pk=run.pk)
    assert gone.sync_failures == 1
    assert "does not" in gone.sync_error.lower() or "not found" in gone.sync_error.lower()
    assert gone.sync_due_at is not None
    assert (gone.sync_due_at - timezone.now()).total_seconds() > 1


def test_express_children_are_described_never_asked_for_history(
    fake_aws: Any, make_state_machine: Callable[..., str], start: Callable[..., str]
) -> None:
    # moto's parser refuses ExecutionType EXPRESS: the cached definition says it.
    parent = start(make_state_machine("etl", LONG_WAIT), "run-1")
    fake = fake_aws.app.map_runs.create(
        parent, items(2, 1), label="Items", execution_type="EXPRESS", start=time.time() - 30
    )
    ex = flows.import_execution(parent)
    StateMachine.objects.filter(pk=ex.state_machine_id).update(definition=json.dumps(PARENT))
    run = MapRun.objects.get(arn=fake.arn)
    sync(run)
    assert StateMachine.objects.get(arn=fake.state_machine_arn).type == "EXPRESS"
    children = list(Execution.objects.filter(map_run_arn=run.arn))
    stats = runs.Stats()
    with aws.count_calls() as calls:
        for child in children:
            flows.sync_execution(child, stats)
    assert "GetExecutionHistory" not in calls
    assert calls["DescribeExecution"] == 2
    assert all(
        c.history_complete and c.sync_due_at is None
        for c in Execution.objects.filter(map_run_arn=run.arn)
    )


def test_a_standard_child_looked_up_by_arn_gets_its_history_and_map_run(
    fake_aws: Any, parent: str
) -> None:
    fake = fake_aws.app.map_runs.create(parent, items(1, 1), start=time.time() - 30)
    child = flows.import_execution(fake.children[0].arn)
    assert child.map_run_arn == fake.arn
    assert child.state_machine.arn == fake.state_machine_arn
    assert list(child.events.values_list("type", flat=True).order_by("event_id")) == [
        "ExecutionStarted",
        "ExecutionSucceeded",
    ]


def test_manage_py_sync_reads_map_runs_and_their_children(fake_aws: Any, parent: str) -> None:
    from django.core.management import call_command

    fake = fake_aws.app.map_runs.create(parent, items(3, 1), start=time.time() - 30)
    call_command("sync", verbosity=0)
    run = MapRun.objects.get(arn=fake.arn)
    assert run.status == "SUCCEEDED"
    assert run.sync_due_at is None
    children = Execution.objects.filter(map_run_arn=fake.arn)
    assert children.count() == 3
    assert all(c.history_complete and c.described_at for c in children)


def test_a_map_run_redriven_in_the_parents_history_is_due_again(fake_aws: Any, parent: str) -> None:
    fake = fake_aws.app.map_runs.create(parent, items(1, 1), start=time.time() - 30)
    ex = flows.import_execution(parent)
    sync(MapRun.objects.get(arn=fake.arn))
    assert MapRun.objects.get(arn=fake.arn).sync_due_at is None
    map_runs.note_map_runs(ex.pk, [{"type": "MapRunRedriven", "timestamp": timezone.now()}])
    assert MapRun.objects.get(arn=fake.arn).sync_due_at is not None
