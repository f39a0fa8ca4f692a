"""Fault 6: eventual consistency. AWS lists an execution that DescribeExecution
does not know yet (the fake answers ExecutionDoesNotExist for executions
younger than LAG seconds). A real worker keeps it, retries it with backoff,
and syncs it fully once AWS knows it; meanwhile its pages say it is syncing
(waiting for AWS), not that something failed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from executions.models import SYNC_LAGGING, Execution, StateMachine, SyncRun
from tests.support.helpers import LONG_WAIT, PASS, assert_cache_equals_aws, wait_for
from tests.support.workers import Processes

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

LAG = 12.0


@pytest.fixture
def processes(fake_aws: Any, tmp_path: Path) -> Iterator[Processes]:
    with Processes(tmp_path, endpoint=fake_aws.url) as p:
        yield p


def test_an_execution_aws_cannot_describe_yet_is_retried_and_shown_as_syncing(
    processes: Processes,
    fake_aws: Any,
    viewer_client: Client,
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    sfn: Any,
) -> None:
    fake_aws.app.configure(faults={"describe_lag_seconds": LAG})
    hello = make_state_machine("hello", PASS)
    nightly = make_state_machine("nightly", LONG_WAIT)
    worker = processes.worker()
    # Started once the worker is at work, so that the lag is what it meets.
    wait_for(lambda: StateMachine.objects.count() == 2, timeout=60)
    done = start(hello, "hello-1", {"order": 7})
    running = start(nightly, "nightly-1")

    def lagging() -> bool:
        assert worker.poll() is None, "the worker died"
        rows = Execution.objects.filter(
            arn__in=[done, running], sync_error__startswith=SYNC_LAGGING
        )
        return rows.count() == 2

    wait_for(lagging, timeout=LAG - 2, interval=0.2)

    # Listed, kept, and shown as on its way: not as an error.
    for arn in (done, running):
        ex = Execution.objects.get(arn=arn)
        assert ex.described_at is None
        assert ex.sync_due_at is not None
        html = viewer_client.get(reverse("execution_detail", args=[arn])).content.decode()
        assert "Syncing. Waiting for AWS" in html
        assert "eventually consistent" in html
        assert "Sync error" not in html
        assert "Last sync of this execution failed" not in html
        assert "some syncs are failing" not in html
    listed = viewer_client.get(reverse("execution_list")).content.decode()
    assert "hello-1" in listed
    assert "nightly-1" in listed
    assert "some syncs are failing" not in listed
    sm = StateMachine.objects.get(arn=hello)
    page = viewer_client.get(reverse("state_machine_detail", args=[sm.arn])).content.decode()
    assert "syncing" in page
    assert "sync failing" not in page
    assert not SyncRun.objects.filter(ok=False).exists()

    # Once AWS knows them, they sync fully.
    def synced() -> bool:
        assert worker.poll() is None, "the worker died"
        return (
            Execution.objects.filter(arn=done, history_complete=True, sync_error="").exists()
            and Execution.objects.filter(
                arn=running, described_at__isnull=False, sync_error=""
            ).exists()
        )

    wait_for(synced, timeout=LAG + 60, interval=0.5)
    assert_cache_equals_aws(sfn, [done, running])
    html = viewer_client.get(reverse("execution_detail", args=[done])).content.decode()
    assert "Waiting for AWS" not in html
    assert '"order": 7' in html or "&quot;order&quot;: 7" in html
    # Retried with backoff: more than once, far from once per tick.
    by_execution = fake_aws.post("/fakeaws/calls", {})["by_execution"]
    for arn in (done, running):
        assert 2 <= by_execution[arn]["DescribeExecution"] <= 8, by_execution[arn]
    assert not SyncRun.objects.filter(ok=False).exists()
