"""Peak memory of a worker syncing a 25,000-event history.

    .venv/bin/python -m bench.worker_rss

The endpoint (`python -m fakeaws`, its own process) runs one execution that
loops until it has 25,000 events, the first few carrying 256 KiB payloads. A
Celery worker (solo pool: the tasks run in the worker process itself, so its
peak is the one that counts) syncs it; its peak resident set (VmHWM) is read
from /proc when the history is stored. Target: <= 250 MB.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.common import (
    DEFAULT_REDIS_URL,
    ROOT,
    fakeaws_process,
    report,
    reset_cache_tables,
    setup_django,
)

KIB_256 = "x" * (256 * 1024 - 64)
# 1 + 2 + 3 x 8332 + 1 events ~ 25,000 (AWS's limit).
LOOP = {
    "StartAt": "Big",
    "States": {
        "Big": {"Type": "Pass", "Result": {"n": 0, "blob": KIB_256}, "Next": "Drop"},
        "Drop": {"Type": "Pass", "Parameters": {"n.$": "$.n"}, "Next": "Count"},
        "Count": {"Type": "Pass", "Parameters": {"n.$": "States.MathAdd($.n, 1)"}, "Next": "More"},
        "More": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.n", "NumericLessThan": 6248, "Next": "Count"}],
            "Default": "Done",
        },
        "Done": {"Type": "Succeed"},
    },
}


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def main() -> None:
    setup_django(redis_url=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL))
    import boto3

    from executions.models import Execution, HistoryEvent

    reset_cache_tables()
    with fakeaws_process() as endpoint:
        sfn = boto3.client("stepfunctions", region_name="us-east-1", endpoint_url=endpoint)
        sm = sfn.create_state_machine(
            name="big", definition=json.dumps(LOOP), roleArn="arn:aws:iam::123456789012:role/b"
        )["stateMachineArn"]
        arn = sfn.start_execution(
            stateMachineArn=sm, name="big-1", input=json.dumps({"blob": KIB_256})
        )["executionArn"]
        while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
            time.sleep(1)

        env = {
            **os.environ,
            "SFNUI_AWS_ENDPOINT_URL": endpoint,
            "SFNUI_REGIONS": "us-east-1",
            "DJANGO_DEBUG": "true",
            "SFNUI_SYNC_TICK": "1",
            "SFNUI_LOG_LEVEL": "WARNING",
        }
        log = (ROOT / "var" / "bench" / "worker_rss.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "sfnui", "worker", "--beat", "--pool=solo",
             "--loglevel=WARNING", "--schedule", str(ROOT / "var" / "bench" / "beat-rss")],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            time.sleep(3)
            idle = vm_hwm_mb(worker.pid)
            started = time.monotonic()
            while not Execution.objects.filter(arn=arn, history_complete=True).exists():
                if worker.poll() is not None:
                    raise RuntimeError("the worker died: see var/bench/worker_rss.log")
                if time.monotonic() - started > 900:
                    raise TimeoutError("not synced in 15 minutes")
                time.sleep(0.5)
            elapsed = time.monotonic() - started
            peak = vm_hwm_mb(worker.pid)
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=30)
        events = HistoryEvent.objects.filter(execution__arn=arn).count()
        report(
            "worker_rss",
            {
                "events": events,
                "sync seconds": round(elapsed, 1),
                "worker peak RSS MB (VmHWM)": round(peak, 1),
                "worker RSS MB before the sync": round(idle, 1),
            },
        )


if __name__ == "__main__":
    main()
