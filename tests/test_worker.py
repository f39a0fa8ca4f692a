"""A real Celery worker, with beat, on the real broker (Redis when REDIS_URL is
set, the embedded filesystem broker otherwise), syncing from the fake AWS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection

from executions.models import Execution, SyncRun
from tests.helpers import PASS, PAYMENT, assert_cache_equals_aws, wait_for, wait_until_finished

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def database_url() -> str:
    """The test database, as a URL a subprocess can open."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


@pytest.fixture
def worker(fake_aws: Any, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(*extra: str, **env_overrides: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "SFNUI_AWS_ENDPOINT_URL": fake_aws.url,
            "SFNUI_REGIONS": "us-east-1",
            "SFNUI_SYNC_TICK": "0.5",
            "SFNUI_RUNNING_MIN_INTERVAL": "1",
            "SFNUI_LIST_INTERVAL": "1",
            # Its own broker folder / queue, so no other worker takes its tasks.
            "SFNUI_VAR_DIR": str(tmp_path / "var"),
            "SFNUI_QUEUE": f"test-{uuid.uuid4().hex[:8]}",
            "DJANGO_DEBUG": "true",
            **env_overrides,
        }
        if django_settings.REDIS_URL:
            env["REDIS_URL"] = django_settings.REDIS_URL
        log = tmp_path / f"worker-{len(started)}.log"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "sfnui",
                "worker",
                "--beat",
                "--loglevel=INFO",
                "--concurrency=2",
                "--without-gossip",
                "--without-mingle",
                "--schedule",
                str(tmp_path / f"beat-{len(started)}"),
                *extra,
            ],
            cwd=django_settings.BASE_DIR,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append((proc, log))
        return proc

    yield start
    for proc, log in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        print(f"--- {log.name} ---\n{log.read_text(errors='replace')[-4000:]}")


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
