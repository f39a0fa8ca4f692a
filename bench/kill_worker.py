"""A worker SIGKILLed again and again while it syncs large histories.

    .venv/bin/python -m bench.kill_worker                 # 100 kills
    .venv/bin/python -m bench.kill_worker --kills 30      # a quicker look

tests/faults/test_worker_killed.py, with more kills and a report. The
endpoint (`python -m fakeaws`, its own process) holds a few histories of
thousands of events, a few dozen medium ones and some that grow while the
kills happen, and new ones keep starting (so that there is always work to be
killed in); its pages are cut to 100 events so that kills land between pages.
A Celery worker (prefork, two processes, beat embedded) is started, killed
(SIGKILL to its whole process group) at a random moment once it is at work,
and started again, --kills times. Then:

- every claim and lock of the dead workers must be gone within one lease;
- one last worker finishes the sync; the cache must equal AWS exactly
  (every field of every execution, every event once).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import (
    DEFAULT_REDIS_URL,
    ROOT,
    fakeaws_process,
    report,
    reset_cache_tables,
    setup_django,
    summary,
    wait_until,
)

LEASE = 3.0
OPERATIONS = (
    "ListStateMachines",
    "DescribeStateMachine",
    "ListExecutions",
    "DescribeExecution",
    "GetExecutionHistory",
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    setup_django(redis_url=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL))
    import boto3
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
    )

    reset_cache_tables()
    log_dir = ROOT / "var" / "bench" / "kill_worker"
    log_dir.mkdir(parents=True, exist_ok=True)

    with fakeaws_process() as endpoint:

        def control(path: str, body: dict[str, Any]) -> Any:
            request = urllib.request.Request(  # noqa: S310 (loopback)
                endpoint + path, data=json.dumps(body).encode(), method="POST"
            )
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return json.loads(response.read() or b"{}")

        def calls() -> int:
            return sum(control("/fakeaws/calls", {})["calls"].values())

        sfn = boto3.client("stepfunctions", region_name="us-east-1", endpoint_url=endpoint)
        role = "arn:aws:iam::123456789012:role/bench"

        def machine(name: str, definition: dict[str, Any]) -> str:
            arn: str = sfn.create_state_machine(
                name=name, definition=json.dumps(definition), roleArn=role
            )["stateMachineArn"]
            return arn

        def start(sm: str, name: str) -> str:
            arn: str = sfn.start_execution(stateMachineArn=sm, name=name, input="{}")[
                "executionArn"
            ]
            return arn

        control("/fakeaws/config", {"faults": {"page_limit": 100}})
        t0 = time.monotonic()
        sizes = (1500, 1200, 900)
        arns = [start(machine(f"loop-{n}", counting_loop(n)), f"big-{n}") for n in sizes]
        medium = machine("loop-150", counting_loop(150))
        arns += [start(medium, f"medium-{i}") for i in range(30)]
        arns += [start(machine("payments", PAYMENT), "pay-1"), start(machine("fails", FAIL), "f-1")]
        wait_until(
            lambda: all(
                sfn.describe_execution(executionArn=a)["status"] != "RUNNING" for a in arns
            ),
            timeout=600,
            interval=1,
        )
        growing = machine("ticking", ticking(30))
        running = [start(growing, f"tick-{i}") for i in range(2)]
        arns += running
        events = sum(len(aws_events(sfn, a)) for a in arns)
        print(f"{len(arns)} executions, {events} events, in {time.monotonic() - t0:.0f} s")
        big = machine("loop-1000", counting_loop(1000))

        def more_work(n: int) -> None:
            """New executions keep arriving while the kills happen."""
            if n % 5 == 4:
                arns.extend(start(medium, f"medium-{n}-{i}") for i in range(3))
            if n % 15 == 14:
                running.append(start(growing, f"tick-{n}"))
                arns.append(running[-1])
            if n % 25 == 24:
                running.append(start(big, f"big-later-{n}"))
                arns.append(running[-1])

        env = {
            **os.environ,
            "SFNUI_AWS_ENDPOINT_URL": endpoint,
            "SFNUI_REGIONS": "us-east-1",
            "DJANGO_DEBUG": "true",
            "SFNUI_LOG_LEVEL": "WARNING",
            "SFNUI_SYNC_LEASE": str(LEASE),
            "SFNUI_SYNC_TICK": "0.5",
            "SFNUI_SYNC_BATCH": "1",
            "SFNUI_LIST_INTERVAL": "1",
            "SFNUI_LIST_IDLE_INTERVAL": "2",
            "SFNUI_LIST_MAX_INTERVAL": "2",
            "SFNUI_RUNNING_MIN_INTERVAL": "1",
            "SFNUI_RUNNING_MAX_INTERVAL": "2",
            "SFNUI_API_QUOTAS": ",".join(f"{op}=100000/100000" for op in OPERATIONS),
        }

        def worker(n: int) -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "sfnui", "worker", "--beat",
                 "--loglevel=WARNING", "--concurrency=2", "--without-gossip",
                 "--without-mingle", "--without-heartbeat",
                 "--schedule", str(log_dir / "beat-schedule")],
                cwd=ROOT, env=env, stdout=(log_dir / f"worker-{n % 5}.log").open("wb"),
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

        def kill(proc: subprocess.Popen[bytes]) -> None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            while _group(proc.pid):
                time.sleep(0.05)

        kills: list[dict[str, Any]] = []
        t_kills = time.monotonic()
        for n in range(args.kills):
            more_work(n)
            before = calls()
            booted = time.monotonic()
            proc = worker(n)
            wait_until(lambda p=proc, b=before: calls() > b or p.poll() is not None, timeout=120)
            if proc.poll() is not None:
                raise RuntimeError(f"the worker died by itself: see {log_dir}")
            time.sleep(rng.uniform(0.0, 1.5))
            at_kill = {
                "alive_s": round(time.monotonic() - booted, 2),
                "calls": calls() - before,
                "events_stored": HistoryEvent.objects.count(),
                "unfinished": Execution.objects.filter(history_complete=False).count(),
            }
            kill(proc)
            killed_at = timezone.now()
            kills.append(at_kill)
            if n % 10 == 9:
                print(f"{n + 1} kills; last: {at_kill}", flush=True)
        kill_seconds = time.monotonic() - t_kills

        # Claims and locks of the dead: gone within a lease.
        slack = dt.timedelta(seconds=LEASE + 1)
        stuck = Execution.objects.filter(sync_due_at__gt=killed_at + slack).count()
        stuck += StateMachine.objects.filter(list_due_at__gt=killed_at + slack).count()
        keys = ["lock:sync-tick"]
        keys += [f"lock:execution:{pk}" for pk in Execution.objects.values_list("pk", flat=True)]
        sms = StateMachine.objects.values_list("pk", flat=True)
        keys += [f"lock:state-machine:{pk}" for pk in sms]
        held_at_end = sum(cache.get(k) is not None for k in keys)
        lock_seconds = wait_until(
            lambda: all(cache.get(k) is None for k in keys), timeout=LEASE + 10, interval=0.1
        )

        t_final = time.monotonic()
        proc = worker(args.kills)
        try:
            wait_until(
                lambda: all(
                    sfn.describe_execution(executionArn=a)["status"] != "RUNNING" for a in running
                ),
                timeout=600,
                interval=1,
            )
            wait_until(
                lambda: (
                    Execution.objects.count() == len(arns)
                    and not Execution.objects.filter(history_complete=False).exists()
                ),
                timeout=600,
                interval=0.5,
            )
            final_seconds = time.monotonic() - t_final
        finally:
            kill(proc)
        control("/fakeaws/config", {"faults": {}})
        events = sum(len(aws_events(sfn, a)) for a in arns)
        mismatches = []
        for arn in arns:
            try:
                assert_cache_equals_aws(sfn, [arn])
            except AssertionError:
                mismatches.append(arn)
        duplicates = (
            HistoryEvent.objects.values("execution_id", "event_id")
            .annotate(n=Count("id"))
            .filter(n__gt=1)
            .count()
        )
        report(
            "kill_worker",
            {
                "kills": len(kills),
                "kills while work was left": sum(k["unfinished"] > 0 for k in kills),
                "kills after the worker had called AWS": sum(k["calls"] > 0 for k in kills),
                "seconds alive per worker": summary([k["alive_s"] for k in kills]),
                "AWS calls per worker life": summary([float(k["calls"]) for k in kills]),
                "kill phase seconds": round(kill_seconds, 1),
                "executions": len(arns),
                "events in AWS": events,
                "events in the cache": HistoryEvent.objects.count(),
                "duplicated events": duplicates,
                "executions differing from AWS": len(mismatches),
                "due later than a lease after the last kill (stuck)": stuck,
                "locks held at the last kill": held_at_end,
                "seconds until every lock had expired": round(lock_seconds, 1),
                "final sync seconds": round(final_seconds, 1),
                "database": os.environ["DATABASE_URL"].split("@")[-1],
            },
        )
        if mismatches or duplicates or stuck:
            raise SystemExit(f"FAILED: {len(mismatches)} differ, {duplicates} dup, {stuck} stuck")


def _group(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


if __name__ == "__main__":
    main()
