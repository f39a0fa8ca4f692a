"""Freshness: how soon the cache shows that a running execution finished.

    .venv/bin/python -m bench.freshness                    # 2,000 running executions
    .venv/bin/python -m bench.freshness --executions 300   # a quicker look

The endpoint (`python -m fakeaws`, its own process) enforces AWS's us-east-1
token buckets. N executions wait a random time (so random ones finish while
we watch), a real worker with beat syncs them with the default share of each
quota. Once the first backfill is done, every execution that finishes is
timed from its stopDate (AWS's clock) to the moment its detail page shows
the cache holds the new status (polled every 0.5 s; then its detail page is
fetched once to check it shows it). Target: p95 <= 15 s, and no call throttled
by the endpoint (the sync stayed within its share).
"""

from __future__ import annotations

import argparse
import itertools
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
    summary,
    workers,
)

WAITING = {
    "StartAt": "Work",
    "States": {
        "Work": {"Type": "Wait", "SecondsPath": "$.seconds", "Next": "Done"},
        "Done": {"Type": "Succeed"},
    },
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--executions", type=int, default=2000)
    parser.add_argument("--watch", type=float, default=240.0, help="seconds of finishing to time")
    args = parser.parse_args()

    # The detail pages are fetched with Django's test client (host "testserver").
    setup_django(
        redis_url=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL), DJANGO_ALLOWED_HOSTS="testserver"
    )
    import boto3
    from botocore.config import Config
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    from executions.models import Execution, SyncRun

    reset_cache_tables()
    with fakeaws_process("--quotas", "aws") as endpoint:
        # Our own set-up calls pay AWS's quotas too: retry them patiently.
        config = Config(
            retries={"mode": "standard", "total_max_attempts": 20}, max_pool_connections=20
        )
        sfn = boto3.client(
            "stepfunctions", region_name="us-east-1", endpoint_url=endpoint, config=config
        )
        sm = sfn.create_state_machine(
            name="waiters",
            definition=json.dumps(WAITING),
            roleArn="arn:aws:iam::123456789012:role/b",
        )["stateMachineArn"]

        # The first backfill (a DescribeExecution each, at the budget's pace)
        # must be over before the watched window opens, then they finish at random.
        backfill = args.executions / (
            settings.SFNUI_API_QUOTAS["DescribeExecution"][1] * settings.SFNUI_API_SHARE
        )
        first_end = backfill * 1.3 + 60
        rng = random.Random(7)
        waits = [int(first_end + rng.uniform(0, args.watch)) for _ in range(args.executions)]
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda i: sfn.start_execution(
                        stateMachineArn=sm,
                        name=f"wait-{i:05d}",
                        input=json.dumps({"seconds": waits[i]}),
                    ),
                    range(args.executions),
                )
            )
        t_start = time.time()
        print(f"{args.executions} started; the first ends in {min(waits)} s", flush=True)

        user, _ = get_user_model().objects.get_or_create(username="bench")
        client = Client()
        client.force_login(user)

        latencies: list[float] = []
        page_mismatches = 0
        watch_start = timezone.now()
        with workers(endpoint, concurrency=2, SFNUI_SYNC_TICK="1") as proc:
            synced_at = _wait_backfill(
                Execution, args.executions, proc, deadline=t_start + first_end
            )
            print(f"backfill done after {synced_at - t_start:.0f} s", flush=True)
            pending = {
                e.arn: t_start + waits[int(e.name.split("-")[1])]
                for e in Execution.objects.filter(status="RUNNING")
            }
            watch_end = t_start + first_end + args.watch + 30
            while pending and time.time() < watch_end:
                if proc.poll() is not None:
                    raise RuntimeError("the worker died: see var/bench/worker.log")
                now = time.time()
                due = [a for a, at in pending.items() if at <= now]
                # Polled in the database, not through the page: opening a
                # running execution's page makes it sync sooner, which would
                # flatter the background sync measured here.
                seen = list(
                    Execution.objects.filter(arn__in=due, status="SUCCEEDED").values_list(
                        "arn", "stop_date"
                    )
                )
                # The moment of the query, for all it found: the page checks
                # below take time that is the bench's, not the sync's.
                seen_at = timezone.now()
                for arn, stop in seen:
                    if stop is not None:
                        latencies.append((seen_at - stop).total_seconds())
                    del pending[arn]
                for arn, _ in seen:
                    page = client.get(f"/executions/{arn}/")
                    if page.status_code != 200 or b"SUCCEEDED" not in page.content:
                        page_mismatches += 1
                time.sleep(0.5)
            throttled = _control(endpoint, "/fakeaws/calls")["throttled"]
        report(
            "freshness",
            {
                "running executions": args.executions,
                "finished while watched": len(latencies),
                "not seen finished in time": len(pending),
                "detail pages that did not show it": page_mismatches,
                "seconds from stopDate to the detail page showing it": {
                    k: round(v, 2) for k, v in summary(latencies).items()
                },
                "calls throttled by the endpoint (AWS quotas)": throttled,
                "share of each quota": settings.SFNUI_API_SHARE,
                **_sync_runs(SyncRun, watch_start),
            },
        )


def _sync_runs(model: Any, since: Any) -> dict[str, Any]:
    """Where an end's time goes: how far apart the listings of the state
    machine started, how long they and the execution batches took."""
    runs = model.objects.filter(started_at__gte=since, finished_at__isnull=False)
    lists = list(
        runs.filter(kind="list").order_by("started_at").values_list("started_at", "finished_at")
    )
    batches = list(runs.filter(kind="executions").values_list("started_at", "finished_at"))
    gaps = [(b[0] - a[0]).total_seconds() for a, b in itertools.pairwise(lists)]
    return {
        "seconds between the listings' starts": {k: round(v, 2) for k, v in summary(gaps).items()},
        "seconds a listing took": {
            k: round(v, 2) for k, v in summary([(f - s).total_seconds() for s, f in lists]).items()
        },
        "seconds a batch of executions took": {
            k: round(v, 2)
            for k, v in summary([(f - s).total_seconds() for s, f in batches]).items()
        },
    }


def _control(endpoint: str, path: str) -> Any:
    import urllib.request

    request = urllib.request.Request(endpoint + path, data=b"{}", method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.loads(response.read())


def _wait_backfill(model: Any, n: int, proc: subprocess.Popen[bytes], deadline: float) -> float:
    while model.objects.filter(described_at__isnull=False).count() < n:
        if proc.poll() is not None:
            raise RuntimeError("the worker died: see var/bench/worker.log")
        if time.time() > deadline:
            raise TimeoutError("the first backfill did not finish before executions started ending")
        time.sleep(1)
    return time.time()


if __name__ == "__main__":
    main()
