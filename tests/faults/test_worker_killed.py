"""Fault 1: a worker killed mid-sync (SIGKILL to its whole process group, prefork
children and embedded beat included) at random points, restarted, again and
again, while it syncs large histories. Afterwards the cache equals AWS exactly
(every field of every execution, every event once), nothing is left claimed by
a dead worker for longer than the lease, and its locks expire.

The history pages are cut to 100 events (AWS's maxResults is an upper bound
only) so that a kill lands between pages as well as inside one, and the lease is
a few seconds so that 20+ kills fit in about a minute and a half.
bench/kill_worker.py does the same with more kills and prints a report.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.db.models import Count
from django.utils import timezone

from executions.models import Execution, HistoryEvent, StateMachine
from tests.support.helpers import (
    FAIL,
    PAYMENT,
    assert_cache_equals_aws,
    aws_events,
    counting_loop,
    ticking,
    wait_for,
    wait_until_finished,
)
from tests.support.workers import Processes

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

KILLS = 20
LEASE = 3.0
PAGE = 100
# Plenty for the sync: the point here is kills, not quotas.
UNLIMITED = ",".join(
    f"{op}=100000/100000"
    for op in (
        "ListStateMachines",
        "DescribeStateMachine",
        "ListExecutions",
        "DescribeExecution",
        "GetExecutionHistory",
    )
)
WORKER_ENV: dict[str, Any] = {
    "SFNUI_SYNC_LEASE": str(LEASE),
    "SFNUI_SYNC_TICK": "0.5",
    # One execution a task: more tasks than one life of the worker gets
    # through, so that a restarted worker finds queued work at once instead
    # of waiting for the leases of its predecessor.
    "SFNUI_SYNC_BATCH": "1",
    # Below the lease, so that any due time further away than a lease is one
    # a dead worker left behind.
    "SFNUI_LIST_INTERVAL": "1",
    "SFNUI_LIST_IDLE_INTERVAL": "2",
    "SFNUI_LIST_MAX_INTERVAL": "2",
    "SFNUI_RUNNING_MIN_INTERVAL": "1",
    "SFNUI_RUNNING_MAX_INTERVAL": "2",
    "SFNUI_API_QUOTAS": UNLIMITED,
    "SFNUI_LOG_LEVEL": "WARNING",
}


@pytest.fixture
def processes(fake_aws: Any, tmp_path: Path) -> Iterator[Processes]:
    with Processes(tmp_path, endpoint=fake_aws.url) as p:
        yield p


def calls_made(fake_aws: Any) -> int:
    with fake_aws.app.lock:
        return sum(fake_aws.app.calls.values())


def _work_left() -> bool:
    return Execution.objects.filter(history_complete=False).exists()


def _at_work_or_gone(fake_aws: Any, proc: subprocess.Popen[bytes], before: int) -> bool:
    """The worker has made a call since `before` and has work left, or it
    has exited."""
    return (calls_made(fake_aws) > before and _work_left()) or proc.poll() is not None


def lock_keys() -> list[str]:
    keys = ["lock:sync-tick"]
    keys += [f"lock:execution:{pk}" for pk in Execution.objects.values_list("pk", flat=True)]
    keys += [f"lock:state-machine:{pk}" for pk in StateMachine.objects.values_list("pk", flat=True)]
    return keys


def test_a_worker_killed_again_and_again_leaves_the_cache_equal_to_aws(
    processes: Processes,
    fake_aws: Any,
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    sfn: Any,
) -> None:
    rng = random.Random(6)
    fake_aws.app.configure(faults={"page_limit": PAGE})
    # Two histories that take longer to fetch than a worker lives here (a
    # fetch killed halfway starts again from the newest event), ten that
    # take about one life, and small ones with every kind of field.
    big = [
        start(make_state_machine(f"loop-{n}", counting_loop(n)), f"big-{n}", {"size": n})
        for n in (1100, 900)
    ]
    medium_sm = make_state_machine("loop-100", counting_loop(100))
    medium = [start(medium_sm, f"medium-{i}", {"i": i}) for i in range(10)]
    small = [
        start(make_state_machine("payments", PAYMENT), "pay-1", {"amount": 12}),
        start(make_state_machine("fails", FAIL), "fail-1"),
    ]
    wait_until_finished(sfn, big + medium + small, timeout=120)
    # Running while the kills happen: their histories grow, and they end;
    # new ones keep starting, so that there is always work to be killed in.
    growing = make_state_machine("ticking", ticking(12))
    running = [start(growing, f"tick-{i}") for i in range(2)]
    arns = big + medium + small + running
    total_events = sum(len(aws_events(sfn, arn)) for arn in big + medium)
    assert total_events > 10_000

    kills = []
    for n in range(KILLS):
        # Every fourth kill, from the second on: the last starts three kills
        # before the end, so that it is still running for those kills but
        # does not keep the test waiting long after them. And whenever the
        # cache has nothing left to finish (a slow machine takes longer over
        # each kill, and the ticking ones end meanwhile): a kill must land on
        # work in progress.
        if n % 4 == 1 or not _work_left():
            running.append(start(growing, f"tick-later-{n}"))
            arns.append(running[-1])
        before = calls_made(fake_aws)
        proc = processes.worker(**WORKER_ENV)
        # Kill it at a random point once it is at work (not while it boots).
        wait_for(functools.partial(_at_work_or_gone, fake_aws, proc, before), timeout=60)
        assert proc.poll() is None, "the worker died by itself"
        time.sleep(rng.uniform(0.0, 1.5))
        stored = HistoryEvent.objects.count()
        unfinished = Execution.objects.filter(history_complete=False).count()
        processes.kill(proc)
        killed_at = timezone.now()
        kills.append((stored, unfinished, calls_made(fake_aws) - before))

    print(f"{len(kills)} kills; (events stored, executions unfinished, calls) at each: {kills}")
    # Everything the dead workers claimed comes back within one lease...
    lease_end = killed_at + dt.timedelta(seconds=LEASE)
    late = Execution.objects.filter(sync_due_at__gt=lease_end + dt.timedelta(seconds=1))
    assert not late.exists(), list(late.values("name", "sync_due_at"))
    late_listing = StateMachine.objects.filter(list_due_at__gt=lease_end + dt.timedelta(seconds=1))
    assert not late_listing.exists()
    # ...and so do their locks, without anyone releasing them.
    wait_for(
        lambda: not [key for key in lock_keys() if cache.get(key) is not None],
        timeout=LEASE + 5,
        interval=0.2,
    )

    final = processes.worker(**WORKER_ENV)
    wait_until_finished(sfn, running, timeout=120)

    def settled() -> bool:
        assert final.poll() is None, "the worker died"
        return not Execution.objects.filter(history_complete=False).exists() and (
            Execution.objects.count() == len(arns)
        )

    wait_for(settled, timeout=120, interval=0.5)
    fake_aws.app.configure(faults={})
    assert_cache_equals_aws(sfn, arns)
    duplicates = (
        HistoryEvent.objects.values("execution_id", "event_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    assert not duplicates.exists()
    # Settled: nothing left due, nothing left to describe.
    assert not Execution.objects.filter(sync_due_at__isnull=False).exists()
    assert not Execution.objects.filter(needs_describe=True).exists()
    # And the kills were what the test is about: each hit a worker at work
    # (it had called AWS), nearly all with histories left to finish. Since a
    # sync is one transaction per execution the cache can catch up between
    # a new start and the kill, the worker then listing to find the start.
    assert KILLS >= 20
    assert all(k[2] > 0 for k in kills), kills
    mid_sync = [k for k in kills if k[1] > 0]
    assert len(mid_sync) >= KILLS * 3 // 4, kills
