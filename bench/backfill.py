"""Backfill of closed executions by real Celery workers, against the fake endpoint.

    .venv/bin/python -m bench.backfill                      # 5,000 executions, both runs
    .venv/bin/python -m bench.backfill --executions 500     # a quicker look

1. The endpoint (`python -m fakeaws`, its own process) gets N closed
   executions of ~20 history events each.
2. Baseline: plain sequential boto3 calls from one process (DescribeExecution
   + GetExecutionHistory per execution, as the sync makes them) measure the
   rate the endpoint serves: that is the limit here. Measured before the
   worker's run and again after it; the run is compared with their mean.
3. Unlimited run: a cold cache, our API budget lifted, a worker with 2
   processes plus beat; the time until every execution is synced, and its
   call rate against the baseline (target >= 0.7).
4. Quota run: the endpoint enforces AWS's us-east-1 token buckets, our budget
   spends its default share of them; the time against what the buckets allow
   for that share (target <= 1.2x), and how many calls the endpoint throttled
   (target 0).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import (
    DEFAULT_REDIS_URL,
    fakeaws_process,
    report,
    reset_cache_tables,
    setup_django,
    workers,
)

# ~20 events: ExecutionStarted, 9 Pass states entered and exited, ExecutionSucceeded.
TWENTY_EVENTS = {
    "StartAt": "S0",
    "States": {
        **{f"S{i}": {"Type": "Pass", "Next": f"S{i + 1}"} for i in range(8)},
        "S8": {"Type": "Pass", "End": True},
    },
}


def _payload(i: int, kib: int) -> str:
    if not kib:
        return "{}"
    rng = random.Random(i)
    words = " ".join(
        f"{rng.getrandbits(40):010x}" if rng.random() < 0.3 else f"w{rng.randrange(5000)}"
        for _ in range(kib * 1024 // 7)
    )
    body = {"orderId": f"ord-{i:07d}", "email": f"c{i % 5000}@example.com", "log": words}
    text = json.dumps(body)
    return text if len(text) <= kib * 1024 else text[: kib * 1024 - 2] + '"}'


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--executions", type=int, default=5000)
    parser.add_argument("--skip-quota-run", action="store_true")
    # Inputs of this size (JSON with an order id, an email and varied words;
    # a Pass state passes them on as the output): what the search's index
    # costs the sync (bench/search.py). 0: no input, as before.
    parser.add_argument("--input-kib", type=int, default=0)
    args = parser.parse_args()

    setup_django(redis_url=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL))
    import boto3
    from botocore.config import Config
    from django.conf import settings

    from executions.budget import bucket
    from executions.models import Execution

    with fakeaws_process() as endpoint:
        config = Config(retries={"total_max_attempts": 1}, max_pool_connections=20)
        sfn = boto3.client(
            "stepfunctions", region_name="us-east-1", endpoint_url=endpoint, config=config
        )

        def control(path: str, body: dict[str, Any]) -> Any:
            import urllib.request

            request = urllib.request.Request(  # noqa: S310 (loopback)
                endpoint + path, data=json.dumps(body).encode(), method="POST"
            )
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return json.loads(response.read() or b"{}")

        # --- 1. the executions
        sm = sfn.create_state_machine(
            name="backfill",
            definition=json.dumps(TWENTY_EVENTS),
            roleArn="arn:aws:iam::123456789012:role/b",
        )["stateMachineArn"]
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            arns = list(
                pool.map(
                    lambda i: sfn.start_execution(
                        stateMachineArn=sm, name=f"run-{i:05d}", input=_payload(i, args.input_kib)
                    )["executionArn"],
                    range(args.executions),
                )
            )
        while sfn.list_executions(stateMachineArn=sm, statusFilter="RUNNING", maxResults=1)[
            "executions"
        ]:
            time.sleep(1)
        print(f"{len(arns)} executions in {time.monotonic() - started:.0f} s", flush=True)
        events = len(sfn.get_execution_history(executionArn=arns[0], maxResults=1000)["events"])

        # --- 2. the baseline: sequential boto3 calls, before the worker's run
        # and again after it (this machine's speed drifts by a third within
        # minutes: the mean of both is what the run is compared with).
        sample = arns[: min(1000, len(arns))]

        def baseline() -> float:
            t0 = time.monotonic()
            for arn in sample:
                sfn.describe_execution(executionArn=arn)
                sfn.get_execution_history(executionArn=arn, maxResults=1000, reverseOrder=True)
            return 2 * len(sample) / (time.monotonic() - t0)

        baseline_before = baseline()
        print(f"baseline: {baseline_before:.0f} calls/s", flush=True)

        # --- 3. unlimited
        reset_cache_tables()
        unlimited = ",".join(f"{op}=1000000/1000000" for op in settings.SFNUI_API_QUOTAS)
        before = control("/fakeaws/calls", {})["calls"]
        with workers(
            endpoint,
            concurrency=2,
            SFNUI_API_QUOTAS=unlimited,
            SFNUI_API_SHARE="1",
            SFNUI_SYNC_TICK="0.5",
            SFNUI_SYNC_BATCH="50",
        ) as proc:
            elapsed = _wait_synced(Execution, len(arns), proc, timeout=3600)
        after = control("/fakeaws/calls", {})["calls"]
        calls = {op: n - before.get(op, 0) for op, n in after.items() if n - before.get(op, 0)}
        baseline_after = baseline()
        baseline_rate = (baseline_before + baseline_after) / 2
        print(f"baseline after the run: {baseline_after:.0f} calls/s", flush=True)
        synced_calls = calls.get("DescribeExecution", 0) + calls.get("GetExecutionHistory", 0)
        # Without the worker's start-up: from its first sync run to the end.
        working = _working_seconds()
        unlimited_result = {
            "seconds": round(elapsed, 1),
            "seconds from the first sync run": round(working, 1),
            "rate after start-up (calls/s)": round(synced_calls / working, 1),
            "ratio to baseline after start-up": round(synced_calls / working / baseline_rate, 3),
            "calls": calls,
            "rate (describe+history calls/s)": round(synced_calls / elapsed, 1),
            "ratio to baseline": round(synced_calls / elapsed / baseline_rate, 3),
        }
        print(json.dumps(unlimited_result), flush=True)

        # --- 4. through AWS's quotas
        quota_result: dict[str, Any] = {}
        if not args.skip_quota_run:
            reset_cache_tables()
            control("/fakeaws/config", {"quotas": "aws"})
            before = control("/fakeaws/calls", {})
            share = settings.SFNUI_API_SHARE
            with workers(
                endpoint, concurrency=2, SFNUI_SYNC_TICK="0.5", SFNUI_SYNC_BATCH="20"
            ) as proc:
                elapsed = _wait_synced(Execution, len(arns), proc, timeout=7200)
            after = control("/fakeaws/calls", {})
            calls = {op: n - before["calls"].get(op, 0) for op, n in after["calls"].items()}
            throttled = {
                op: n - before["throttled"].get(op, 0)
                for op, n in after["throttled"].items()
                if n - before["throttled"].get(op, 0)
            }
            allowed = max(
                max(0.0, calls.get(op, 0) - bucket("us-east-1", op).capacity)
                / bucket("us-east-1", op).rate
                for op in ("DescribeExecution", "GetExecutionHistory", "ListExecutions")
            )
            quota_result = {
                "share": share,
                "seconds": round(elapsed, 1),
                "seconds the buckets allow": round(allowed, 1),
                "ratio": round(elapsed / allowed, 3) if allowed else None,
                "calls": calls,
                "throttled by the endpoint": throttled,
            }
            print(json.dumps(quota_result), flush=True)

        report(
            "backfill",
            {
                "executions": len(arns),
                "events each": events,
                "baseline sequential boto3 calls/s (mean of before and after)": round(
                    baseline_rate, 1
                ),
                "baseline before, after": [round(baseline_before, 1), round(baseline_after, 1)],
                "unlimited (2 worker processes)": unlimited_result,
                "through AWS quotas": quota_result,
            },
        )


def _working_seconds() -> float:
    from django.db.models import Max, Min

    from executions.models import SyncRun

    span = SyncRun.objects.aggregate(first=Min("started_at"), last=Max("finished_at"))
    return float((span["last"] - span["first"]).total_seconds())


def _wait_synced(model: Any, n: int, proc: subprocess.Popen[bytes], timeout: float) -> float:
    started = time.monotonic()
    last_report = started
    while True:
        done = model.objects.filter(history_complete=True).count()
        if done >= n:
            return time.monotonic() - started
        if proc.poll() is not None:
            raise RuntimeError("the worker died: see var/bench/worker.log")
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{done}/{n} synced after {timeout} s")
        if time.monotonic() - last_report > 30:
            print(f"  {done}/{n} synced after {time.monotonic() - started:.0f} s", flush=True)
            last_report = time.monotonic()
        time.sleep(0.5)


if __name__ == "__main__":
    main()
