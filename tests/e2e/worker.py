"""A real Celery worker with beat for the browser journeys.

It syncs from the fake AWS into the test database, as `celery -A sfnui worker
--beat` does in production, and it takes the tasks that the live server's
pages send ("sync it now" while someone watches a running execution, the
re-sync after a stop): both use the same broker (the embedded one under this
session's SFNUI_VAR_DIR, or REDIS_URL) and a queue of their own, so that no
other worker on this machine takes those tasks.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from pathlib import Path
from typing import Any

from django.conf import settings

from sfnui.celery import app as celery_app
from tests.support.workers import Processes

# Fast enough that a journey never waits long for the sync.
FAST_SYNC: dict[str, Any] = {
    "SFNUI_SYNC_TICK": "0.5",
    "SFNUI_LIST_INTERVAL": "1",
    "SFNUI_LIST_IDLE_INTERVAL": "2",
    "SFNUI_RUNNING_MIN_INTERVAL": "1",
    "SFNUI_VIEWED_INTERVAL": "1",
    # State machines created after the worker started are found within a second.
    "SFNUI_DISCOVER_INTERVAL": "1",
    # Work claimed just before the test database is flushed between journeys
    # is due again soon, not after the default two minutes.
    "SFNUI_SYNC_LEASE": "10",
    # The journeys are not about AWS's quotas: never wait for the budget.
    "SFNUI_API_QUOTAS": ",".join(
        f"{op}=100000/100000"
        for op in (
            "ListStateMachines",
            "DescribeStateMachine",
            "ListExecutions",
            "DescribeExecution",
            "GetExecutionHistory",
            "StopExecution",
        )
    ),
}


class Worker:
    """`celery -A sfnui worker --beat` on the test database and the fake AWS.

    While it runs, this process (and so the live server) sends its tasks to the
    worker's queue."""

    def __init__(self, endpoint_url: str, folder: Path, **env: str) -> None:
        self.processes = Processes(folder, endpoint=endpoint_url)
        self.queue = self.processes.queue
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self._default_queue: str | None = None

    def start(self) -> Worker:
        env: dict[str, Any] = {
            **FAST_SYNC,
            "SFNUI_REGIONS": ",".join(settings.SFNUI_REGIONS),
            # This session's embedded broker folder, not one of its own.
            "SFNUI_VAR_DIR": str(settings.VAR_DIR),
            **self.env,
        }
        self.proc = self.processes.worker(**env)
        self._default_queue = celery_app.conf.task_default_queue
        celery_app.conf.task_default_queue = self.queue
        return self

    @property
    def log(self) -> Path:
        assert self.processes.started, "the worker was not started"
        return self.processes.started[0].log

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def assert_alive(self) -> None:
        assert self.proc is not None, "the worker was not started"
        if self.proc.poll() is not None:
            raise AssertionError(f"the worker died:\n{self.tail()}")

    def stop(self) -> None:
        if self._default_queue is not None:
            celery_app.conf.task_default_queue = self._default_queue
            self._default_queue = None
        if self.proc is not None:
            # Celery's warm shutdown, asked of the main process only: it ends
            # its pool and beat itself (a TERM to the whole group makes the
            # pool restart its children first, and takes much longer).
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=15)
            self.processes.stop(self.proc)
            self._purge()

    def _purge(self) -> None:
        """Drop what the pages sent that the worker did not take, so that the
        broker (a folder, or a shared Redis) keeps no orphan messages."""
        try:
            with celery_app.connection_for_write() as conn:
                channel: Any = conn.default_channel  # kombu: queue_purge
                channel.queue_purge(self.queue)
        except Exception as exc:  # a leftover message is harmless: say so, go on
            print(f"could not purge the queue {self.queue}: {exc!r}")

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
