"""Events under faults: duplicated, reordered, delayed and dropped deliveries,
and a consumer killed again and again.

    .venv/bin/python -m bench.events_faults
    .venv/bin/python -m bench.events_faults --executions 600 --kills 20

The endpoint (`python -m fakeaws`, its own process) emits Step Functions'
events with faults: a share dropped, a share delivered twice, each delayed
by a random time (so that they arrive out of order). Executions succeed,
fail, time out, are stopped, and some failed ones are redriven and then
succeed (a second attempt, redriveCount 1). A real consumer process is
SIGKILLed at random moments and started again; a worker with beat
reconciles (listings every SFNUI_RECONCILE_INTERVAL, 20 s here).

While it runs, every execution's cached (redriveCount, stage) is sampled ten
times a second: a step backwards is an event applied out of order. At the end
every execution's cached status is compared with AWS's: a difference is a
lost event that reconciliation did not repair either. Targets: 0 and 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

from bench.common import (
    DEFAULT_REDIS_URL,
    ROOT,
    fakeaws_process,
    report,
    reset_cache_tables,
    setup_django,
    workers,
)

DEFINITIONS = {
    "quick": {
        "StartAt": "Work",
        "States": {
            "Work": {"Type": "Wait", "SecondsPath": "$.seconds", "Next": "Route"},
            "Route": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.fail", "BooleanEquals": True, "Next": "Fail"}],
                "Default": "Done",
            },
            "Fail": {"Type": "Fail", "Error": "Bench.Failed", "Cause": "asked to fail"},
            "Done": {"Type": "Succeed"},
        },
    },
    "slow": {
        "StartAt": "Work",
        "TimeoutSeconds": 8,
        "States": {"Work": {"Type": "Wait", "SecondsPath": "$.seconds", "End": True}},
    },
}
STAGE = {"PENDING_REDRIVE": 0, "RUNNING": 1}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--executions", type=int, default=300)
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--drop", type=float, default=0.05)
    parser.add_argument("--duplicate", type=float, default=0.2)
    parser.add_argument("--delay", type=float, default=3.0)
    args = parser.parse_args()

    with fakeaws_process() as endpoint:
        env = {
            "SFNUI_AWS_ENDPOINT_URL": endpoint,
            "SFNUI_REGIONS": "us-east-1",
            "SFNUI_RECONCILE_INTERVAL": "20",
            "SFNUI_EVENTS_HEARTBEAT": "30",
        }
        setup_django(redis_url=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL), **env)
        import boto3

        from executions.models import EventCount, Execution, SyncRun, UnreadableEvent

        reset_cache_tables()
        sfn = boto3.client("stepfunctions", region_name="us-east-1", endpoint_url=endpoint)
        machines = {
            name: sfn.create_state_machine(
                name=name, definition=json.dumps(d), roleArn="arn:aws:iam::123456789012:role/b"
            )["stateMachineArn"]
            for name, d in DEFINITIONS.items()
        }
        made = subprocess.run(
            [sys.executable, "manage.py", "setup_events"],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        queue = next(x for x in made.splitlines() if x.startswith("SFNUI_EVENTS_QUEUE_URL="))
        env["SFNUI_EVENTS_QUEUE_URL"] = queue.split("=", 1)[1]
        # Redelivery after a kill within seconds, not the 60 s of production.
        boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint).set_queue_attributes(
            QueueUrl=env["SFNUI_EVENTS_QUEUE_URL"], Attributes={"VisibilityTimeout": "5"}
        )
        _post(
            endpoint,
            "/fakeaws/config",
            {
                "events": {
                    "drop_fraction": args.drop,
                    "duplicate_fraction": args.duplicate,
                    "delay_seconds": args.delay,
                }
            },
        )

        backwards: list[str] = []
        stop_sampling = threading.Event()
        sampler = threading.Thread(
            target=_sample, args=(Execution, backwards, stop_sampling), daemon=True
        )
        kills = 0
        rng = random.Random(5)
        started = time.time()
        with workers(endpoint, concurrency=2, **env) as worker:
            consumer = _consumer(env)
            sampler.start()
            arns = _traffic(sfn, machines, args.executions, rng, endpoint)
            # Kill the consumer at random moments while the events flow.
            deadline = time.time() + 60
            while kills < args.kills and time.time() < deadline:
                time.sleep(rng.uniform(1.0, 4.0))
                os.killpg(consumer.pid, signal.SIGKILL)
                consumer.wait()
                kills += 1
                consumer = _consumer(env)
            # Wait for the last ends, then for reconciliation to catch the dropped ones.
            expected = _aws_statuses(sfn, arns)
            settle_deadline = time.time() + 180
            while time.time() < settle_deadline:
                if worker.poll() is not None:
                    raise RuntimeError("the worker died: see var/bench/worker.log")
                expected = _aws_statuses(sfn, arns)
                cached = {
                    arn: (status, rc)
                    for arn, status, rc in Execution.objects.filter(arn__in=arns).values_list(
                        "arn", "status", "redrive_count"
                    )
                }
                if cached == expected and all(s not in STAGE for s, _ in expected.values()):
                    break
                time.sleep(2)
            os.killpg(consumer.pid, signal.SIGTERM)
            consumer.wait(timeout=30)
        stop_sampling.set()
        sampler.join()
        cached = {
            arn: (status, rc)
            for arn, status, rc in Execution.objects.filter(arn__in=arns).values_list(
                "arn", "status", "redrive_count"
            )
        }
        wrong = {
            arn: (cached.get(arn), want)
            for arn, want in expected.items()
            if cached.get(arn) != want
        }
        emitted = _post(endpoint, "/fakeaws/calls", {}).get("events", {})
        counts = {
            key: sum(getattr(c, key) for c in EventCount.objects.all())
            for key in ("applied", "duplicate", "stale", "ignored", "unreadable")
        }
        report(
            "events_faults",
            {
                "executions": len(arns),
                "redriven (second attempt)": sum(1 for _, rc in expected.values() if rc),
                "faults": {
                    "dropped share": args.drop,
                    "duplicated share": args.duplicate,
                    "delay up to s": args.delay,
                    "consumer SIGKILLs": kills,
                },
                "endpoint's events": emitted,
                "consumer's outcomes": counts,
                "kept aside (unreadable)": UnreadableEvent.objects.count(),
                "reconciliation found what the events missed": sum(
                    SyncRun.objects.values_list("missed_events", flat=True)
                ),
                "applied out of order (a step backwards seen)": len(backwards),
                "lost (cache differs from AWS at the end)": len(wrong),
                "examples": {"backwards": backwards[:5], "wrong": list(wrong.items())[:5]},
                "seconds": round(time.time() - started, 1),
            },
        )


def _traffic(
    sfn: Any, machines: dict[str, str], n: int, rng: random.Random, endpoint: str
) -> list[str]:
    """Start n executions (about 20 a second) of every outcome; stop some, redrive
    some failed ones and finish them as succeeded."""
    arns: list[str] = []
    for i in range(n):
        kind = rng.random()
        if kind < 0.15:
            arn = sfn.start_execution(
                stateMachineArn=machines["slow"],
                name=f"slow-{i}",
                input=json.dumps({"seconds": rng.choice([2, 30])}),
            )["executionArn"]
        else:
            arn = sfn.start_execution(
                stateMachineArn=machines["quick"],
                name=f"quick-{i}",
                input=json.dumps({"seconds": rng.randint(0, 4), "fail": kind < 0.4}),
            )["executionArn"]
        arns.append(arn)
        if i % 20 == 19:
            time.sleep(1)
    time.sleep(6)
    for arn in rng.sample(arns, max(1, n // 20)):
        # It may have ended first: then AWS refuses, and that is fine.
        with contextlib.suppress(sfn.exceptions.ClientError):
            sfn.stop_execution(executionArn=arn, error="Bench.Stop", cause="runaway")
    # A second attempt for some failed ones: RUNNING with redriveCount 1, then SUCCEEDED.
    failed = [a for a in arns if sfn.describe_execution(executionArn=a)["status"] == "FAILED"]
    for arn in failed[: max(1, len(failed) // 4)]:
        sfn.redrive_execution(executionArn=arn)
        time.sleep(0.2)
        _post(
            endpoint,
            "/fakeaws/finish",
            {
                "executionArn": arn,
                "status": "SUCCEEDED",
                "events": [
                    {
                        "type": "ExecutionSucceeded",
                        "executionSucceededEventDetails": {"output": "{}"},
                    }
                ],
                "output": "{}",
            },
        )
    return arns


def _aws_statuses(sfn: Any, arns: list[str]) -> dict[str, tuple[str, int]]:
    out = {}
    for arn in arns:
        d = sfn.describe_execution(executionArn=arn)
        out[arn] = (d["status"], d.get("redriveCount", 0))
    return out


def _sample(Execution: Any, backwards: list[str], stop: threading.Event) -> None:
    from django.db import connection

    seen: dict[str, tuple[int, int]] = {}
    while not stop.is_set():
        for arn, status, rc in Execution.objects.values_list("arn", "status", "redrive_count"):
            now = (rc, STAGE.get(status, 2))
            before = seen.get(arn)
            if before is not None and now < before:
                backwards.append(f"{arn}: {before} -> {now}")
            seen[arn] = now
        time.sleep(0.1)
    connection.close()


def _consumer(env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = (ROOT / "var" / "bench" / "consumer.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "manage.py", "consume_events"],
        cwd=ROOT,
        env={**os.environ, **env, "SFNUI_LOG_LEVEL": "WARNING"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _post(endpoint: str, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(  # noqa: S310
        endpoint + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        text = response.read()
    return json.loads(text) if text.strip() else {}


if __name__ == "__main__":
    main()
