"""A real Celery worker, with beat, on the real broker (Redis when REDIS_URL is
set, the embedded filesystem broker otherwise), syncing from the fake AWS."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from executions.models import Execution, SyncRun
from tests.support.helpers import (
    PASS,
    PAYMENT,
    assert_cache_equals_aws,
    wait_for,
    wait_until_finished,
)
from tests.support.workers import Processes

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker(fake_aws: Any, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    with Processes(tmp_path, endpoint=fake_aws.url) as processes:
        yield processes.worker


def test_a_real_worker_runs_the_scheduled_sync_and_fills_the_cache(
    worker: Callable[..., subprocess.Popen[bytes]],
    make_state_machine: Callable[..., str],
    start: Callable[..., str],
    sfn: Any,
) -> None:
    hello = make_state_machine("hello", PASS)
    payments = make_state_machine("payments", PAYMENT)
    arns = [start(hello, f"hello-{i}") for i in range(3)] + [start(payments, "pay-1")]
    wait_until_finished(sfn, arns)

    proc = worker()

    def synced() -> bool:
        assert proc.poll() is None, "the worker died"
        return Execution.objects.filter(history_complete=True).count() == len(arns)

    wait_for(synced, timeout=90, interval=0.5)
    assert_cache_equals_aws(sfn, arns)
    kinds = set(SyncRun.objects.filter(ok=True).values_list("kind", flat=True))
    assert {"discover", "list", "executions"} <= kinds
