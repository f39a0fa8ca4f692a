"""Freshness at size: 1,000 state machines in 2 accounts x 2 regions, behind AWS's quotas.

    .venv/bin/python -m bench.freshness_accounts --events on
    .venv/bin/python -m bench.freshness_accounts --events off

The endpoint (`python -m fakeaws --quotas aws`, its own process) enforces
AWS's us-east-1 token buckets per account, region and operation and emits
Step Functions' EventBridge events. Two accounts (the default identity and a
role in 210987654321, assumed through STS), each in us-east-1 and eu-west-1,
hold 250 state machines each. In each account and region a few state machines
are busy (an hour-long execution runs on each from the start, as in an
account at work), the rest idle. A real worker with beat (and, with events
on, `setup_events` and the consumer) syncs them with the default share of
each quota.

Measured:
- an execution's end: from its stopDate (AWS's clock) to the moment the cache
  row the detail page and the API read holds the new status (polled every
  0.25 s; a sample is then fetched through /api/executions/<arn>/);
- a new execution of an idle state machine: from its startDate to the moment
  the cache holds it, against the interval /sync/ states for idle ones;
- the calls per account, region and operation against the budget, and the
  calls the endpoint throttled (target: none).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import (
    DEFAULT_REDIS_URL,
    ROOT,
    fakeaws_process,
    report,
    reset_cache_tables,
    setup_django,
    summary,
    workers,
)

HOME = "123456789012"
OTHER = "210987654321"
REGIONS = ("us-east-1", "eu-west-1")
ROLE = f"arn:aws:iam::{OTHER}:role/sfnui-reader"
WAITING = {
    "StartAt": "Work",
    "States": {
        "Work": {"Type": "Wait", "SecondsPath": "$.seconds", "Next": "Done"},
        "Done": {"Type": "Succeed"},
    },
}
CLOSED = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", choices=["on", "off"], default="on")
    parser.add_argument("--machines", type=int, default=1000, help="in all (4 account-regions)")
    parser.add_argument(
        "--busy", type=int, default=5, help="busy state machines per account-region"
    )
    parser.add_argument("--runs", type=int, default=16, help="timed executions per busy machine")
    parser.add_argument("--idle-probes", type=int, default=2, help="per account-region")
    parser.add_argument("--concurrency", type=int, default=3, help="worker processes")
    args = parser.parse_args()
    events_on = args.events == "on"
    per_target = args.machines // 4

    with fakeaws_process("--quotas", "aws") as endpoint:
        accounts = json.dumps(
            [
                {"regions": list(REGIONS)},
                {"role_arn": ROLE, "regions": list(REGIONS), "name": "other"},
            ]
        )
        env = {
            "SFNUI_AWS_ENDPOINT_URL": endpoint,
            "SFNUI_ACCOUNTS": accounts,
            "SFNUI_REGIONS": ",".join(REGIONS),
            "DJANGO_ALLOWED_HOSTS": "testserver",
        }
        setup_django(redis_url=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL), **env)
        from django.contrib.auth import get_user_model
        from django.test import Client

        from executions.models import Execution, StateMachine
        from executions.sync import plan

        reset_cache_tables()
        clients = {
            (account, region): _client(endpoint, account, region)
            for account in (HOME, OTHER)
            for region in REGIONS
        }

        # 1. The state machines, and the hour-long runs that make some busy.
        t0 = time.time()
        machines: dict[tuple[str, str], list[str]] = {}
        with ThreadPoolExecutor(8) as pool:
            for key, sfn in clients.items():
                machines[key] = list(
                    pool.map(
                        lambda i, sfn=sfn, key=key: sfn.create_state_machine(
                            name=f"sm-{key[1]}-{i:04d}",
                            definition=json.dumps(WAITING),
                            roleArn=f"arn:aws:iam::{key[0]}:role/b",
                        )["stateMachineArn"],
                        range(per_target),
                    )
                )
        busy = {key: arns[: args.busy] for key, arns in machines.items()}
        idle = {key: arns[args.busy :] for key, arns in machines.items()}
        for key, arns in busy.items():
            for arn in arns:
                clients[key].start_execution(
                    stateMachineArn=arn, name="anchor", input=json.dumps({"seconds": 3600})
                )
        print(f"{args.machines} state machines in {time.time() - t0:.0f} s", flush=True)

        worker_env = dict(env, SFNUI_LOG_LEVEL="WARNING")
        consumer: subprocess.Popen[bytes] | None = None
        if events_on:
            made = subprocess.run(
                [sys.executable, "manage.py", "setup_events"],
                cwd=ROOT,
                env={**os.environ, **worker_env},
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            queue = next(x for x in made.splitlines() if x.startswith("SFNUI_EVENTS_QUEUE_URL="))
            worker_env["SFNUI_EVENTS_QUEUE_URL"] = queue.split("=", 1)[1]
            # This process reads the plans too (what /sync/ states).
            from django.conf import settings

            settings.SFNUI_EVENTS_QUEUE_URL = [worker_env["SFNUI_EVENTS_QUEUE_URL"]]
            log = (ROOT / "var" / "bench" / "consumer.log").open("wb")
            consumer = subprocess.Popen(
                [sys.executable, "manage.py", "consume_events"],
                cwd=ROOT,
                env={**os.environ, **worker_env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            with workers(endpoint, concurrency=args.concurrency, **worker_env) as proc:
                result = _measure(args, clients, busy, idle, proc, Execution, StateMachine, plan)
        finally:
            if consumer is not None:
                consumer.terminate()
                consumer.wait(timeout=30)
        calls = _control(endpoint, "/fakeaws/calls")
        duration = time.time() - t0
        result["calls per account:region and operation"] = calls.get("by_target", {})
        result["throttled by the endpoint"] = calls.get("throttled_by_target", {})
        result["events (endpoint)"] = calls.get("events", {})
        result["budget check"] = _budget_check(calls.get("by_target", {}), duration)
        user, _ = get_user_model().objects.get_or_create(username="bench")
        client = Client()
        client.force_login(user)
        shown = 0
        sample = result.pop("_sample")
        for arn in sample:
            body = client.get(f"/api/executions/{arn}/").json()
            shown += body.get("status") in CLOSED
        result["API answers that show the end (sample)"] = f"{shown}/{len(sample)}"
        result["events"] = args.events
        report(f"freshness_accounts_events_{args.events}", result)


def _measure(
    args: Any,
    clients: dict[tuple[str, str], Any],
    busy: dict[tuple[str, str], list[str]],
    idle: dict[tuple[str, str], list[str]],
    proc: subprocess.Popen[bytes],
    Execution: Any,
    StateMachine: Any,
    plan: Any,
) -> dict[str, Any]:
    from django.utils import timezone

    # 2. Discovery, and the busy ones known to be busy.
    anchors = sum(len(v) for v in busy.values())
    _wait(
        lambda: Execution.objects.filter(name="anchor").count() >= anchors,
        proc,
        timeout=900,
        what="the anchors",
    )
    print("every busy state machine is known to be busy", flush=True)
    # Steady state, as an account at work is when an incident comes: every
    # state machine listed once and described (the start's own wave of a
    # thousand first listings and definitions is timed on its own).
    started_at = time.time()
    _wait(
        lambda: (
            not StateMachine.objects.filter(listed_at__isnull=True).exists()
            and not StateMachine.objects.filter(described_at__isnull=True).exists()
        ),
        proc,
        timeout=900,
        what="the first listing of every state machine",
    )
    startup = time.time() - started_at
    print(f"every state machine listed and described ({startup:.0f} s more)", flush=True)

    # 3. The timed executions: ends spread over about two minutes.
    rng = random.Random(12)
    pending: dict[str, float] = {}
    starts: list[tuple[tuple[str, str], str, int, int]] = []
    for key, arns in busy.items():
        for arn in arns:
            for i in range(args.runs):
                starts.append((key, arn, i, rng.randint(5, 45)))
    rng.shuffle(starts)
    probe_at = time.time() + 30
    probes: dict[str, tuple[float, float]] = {}
    latencies: list[float] = []
    sample: list[str] = []
    started_all = time.time()

    def start(item: tuple[tuple[str, str], str, int, int]) -> str:
        key, sm, i, seconds = item
        return str(
            clients[key].start_execution(
                stateMachineArn=sm, name=f"run-{i:03d}", input=json.dumps({"seconds": seconds})
            )["executionArn"]
        )

    with ThreadPoolExecutor(4) as pool:
        # Started over about 60 s, so that ends keep coming for two minutes.
        for chunk in range(0, len(starts), max(1, len(starts) // 60)):
            for arn in pool.map(start, starts[chunk : chunk + max(1, len(starts) // 60)]):
                pending[arn] = time.time()
            time.sleep(1)
            _collect(Execution, pending, latencies, sample, timezone)
    print(f"{len(pending) + len(latencies)} timed executions started", flush=True)

    # 4. New executions of idle state machines.
    while time.time() < probe_at:
        time.sleep(0.25)
    intervals = {}
    for key, arns in idle.items():
        account = "default" if key[0] == HOME else OTHER
        intervals[f"{key[0]}:{key[1]}"] = plan.plan(account, key[1]).idle_interval
        for sm in rng.sample(arns, args.idle_probes):
            arn = clients[key].start_execution(
                stateMachineArn=sm, name="probe", input=json.dumps({"seconds": 1})
            )["executionArn"]
            probes[arn] = (time.time(), intervals[f"{key[0]}:{key[1]}"])

    deadline = time.time() + 300 + max(intervals.values(), default=0)
    found: dict[str, float] = {}
    while (pending or len(found) < len(probes)) and time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the worker died: see var/bench/worker.log")
        _collect(Execution, pending, latencies, sample, timezone)
        for arn, start_date in Execution.objects.filter(arn__in=list(probes)).values_list(
            "arn", "start_date"
        ):
            if arn not in found:
                found[arn] = (timezone.now() - start_date).total_seconds()
        time.sleep(0.25)
    return {
        "state machines": args.machines,
        "seconds from the busy ones known to every one listed and described": round(startup),
        "busy per account-region": args.busy,
        "timed executions": len(latencies) + len(pending),
        "not seen ended in time": len(pending),
        "seconds from stopDate to the cache (detail page, API)": {
            k: round(v, 2) for k, v in summary(latencies).items()
        },
        "idle state machines: seconds from startDate to the cache": {
            k: round(v, 2) for k, v in summary(list(found.values())).items()
        },
        "idle probes not seen": len(probes) - len(found),
        "idle interval /sync/ states, per account:region": {
            k: round(v, 1) for k, v in intervals.items()
        },
        "idle probes later than the stated interval + tick": sum(
            1 for arn, took in found.items() if took > probes[arn][1] + 4
        ),
        "seconds of timed runs": round(time.time() - started_all, 1),
        "_sample": sample[:50],
    }


def _collect(
    Execution: Any,
    pending: dict[str, float],
    latencies: list[float],
    sample: list[str],
    timezone: Any,
) -> None:
    if not pending:
        return
    now = timezone.now()
    for arn, stop in Execution.objects.filter(
        arn__in=list(pending), status__in=CLOSED, stop_date__isnull=False
    ).values_list("arn", "stop_date"):
        latencies.append((now - stop).total_seconds())
        del pending[arn]
        sample.append(arn)


def _wait(predicate: Any, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise RuntimeError("the worker died: see var/bench/worker.log")
        if time.time() > deadline:
            raise TimeoutError(f"{what} did not arrive in {timeout} s")
        time.sleep(0.5)


def _budget_check(by_target: dict[str, dict[str, int]], seconds: float) -> dict[str, Any]:
    """Calls per account-region and operation against share x (burst + rate x time)."""
    from django.conf import settings

    out: dict[str, Any] = {}
    share = settings.SFNUI_API_SHARE
    for target, ops in by_target.items():
        for op, n in ops.items():
            if op not in settings.SFNUI_API_QUOTAS or op == "StartExecution":
                continue
            burst, rate = settings.SFNUI_API_QUOTAS[op]
            allowed = share * (burst + rate * seconds)
            out[f"{target} {op}"] = f"{n} of {allowed:.0f} ({n / allowed:.0%})"
    return out


def _client(endpoint: str, account: str, region: str) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "total_max_attempts": 20}, max_pool_connections=20)
    if account == HOME:
        return boto3.client(
            "stepfunctions", region_name=region, endpoint_url=endpoint, config=config
        )
    sts = boto3.client("sts", region_name=region, endpoint_url=endpoint)
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{OTHER}:role/bench", RoleSessionName="bench")[
        "Credentials"
    ]
    return boto3.client(
        "stepfunctions",
        region_name=region,
        endpoint_url=endpoint,
        config=config,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def _control(endpoint: str, path: str) -> Any:
    request = urllib.request.Request(endpoint + path, data=b"{}", method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.loads(response.read())


if __name__ == "__main__":
    main()
