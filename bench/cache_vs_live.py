"""The list page from the cache vs the same 50 rows built live from AWS.

    .venv/bin/python -m bench.cache_vs_live              # 200 executions, 30 runs each
    .venv/bin/python -m bench.cache_vs_live --runs 100

One endpoint (`python -m fakeaws`, its own process: moto in execute mode,
no quotas) holds a state machine with N finished executions (inputs and
outputs of a few hundred bytes, a few failures). The cache (its own database,
sfnui_bench_live) is filled by one `manage.py sync` against it. Then, taking
turns, many times:

(a) cache: the executions list filtered to that state machine (50 rows),
    rendered by Django's test client in this process, signed in, DEBUG off
    (as bench/pages.py measures pages); and the same 50 rows as JSON from
    /api/executions/ (what a script gets, without the page around them);
(b) live: what a client library or the console does for the same 50 rows:
    ListExecutions(stateMachineArn, maxResults=50), then DescribeExecution of
    each row (for input, output, error, cause), one after another, with
    boto3 against the same endpoint.

The ratio of the medians (live / cache) is the target (>= 10x). Against
real AWS each call also pays a network round trip (20-80 ms from most
places, against ~2 ms on loopback here) and the quotas (DescribeExecution
refills at 15/s in us-east-1), so the real ratio is higher; this one only
counts the work. On a loaded machine both sides wait for a CPU: the CPU time
each side cost (this process and its PostgreSQL backend; the client and the
endpoint process) is reported as well.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.common import fakeaws_process, report, reset_cache_tables, summary

DATABASE_URL = "postgres://postgres@127.0.0.1:5432/sfnui_bench_live"
ORDERS = {
    "StartAt": "Validate",
    "States": {
        "Validate": {"Type": "Pass", "Next": "Route"},
        "Route": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.fail", "BooleanEquals": True, "Next": "Declined"}],
            "Default": "Charge",
        },
        "Charge": {"Type": "Pass", "Result": {"charged": True}, "ResultPath": "$.payment",
                   "Next": "Ship"},
        "Ship": {"Type": "Pass", "Result": {"carrier": "UPS"}, "ResultPath": "$.shipment",
                 "End": True},
        "Declined": {"Type": "Fail", "Error": "Payment.Declined", "Cause": "card declined"},
    },
}  # fmt: skip


def _cpu_ns(pid: int | str) -> int:
    """CPU time of every thread of a process so far (/proc/<pid>/task/*/schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def _child(name: str) -> int:
    """The pid of this process's child whose command line holds `name`."""
    me = str(os.getpid())
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = (proc / "stat").read_text().rsplit(")", 1)[1].split()[1]
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if ppid == me and name.encode() in cmdline:
            return int(proc.name)
    raise RuntimeError(f"no child process {name}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--executions", type=int, default=200)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DB_LIVE", DATABASE_URL))
    args = parser.parse_args()

    with fakeaws_process() as endpoint:
        _measure(args, endpoint, _child("fakeaws"))


def _measure(args: argparse.Namespace, endpoint: str, server_pid: int) -> None:
    from bench import pages

    os.environ["SFNUI_AWS_ENDPOINT_URL"] = endpoint
    os.environ["SFNUI_REGIONS"] = "us-east-1"
    # The whole of our API budget for the one sync that fills the cache.
    os.environ["SFNUI_API_SHARE"] = "1"
    pages._django(args.database_url)
    import boto3
    from botocore.config import Config
    from django.core.management import call_command

    from executions.models import Execution

    sfn = boto3.client(
        "stepfunctions",
        region_name="us-east-1",
        endpoint_url=endpoint,
        config=Config(retries={"total_max_attempts": 1}),
    )
    sm = sfn.create_state_machine(
        name="OrderPipeline",
        definition=json.dumps(ORDERS),
        roleArn="arn:aws:iam::123456789012:role/bench",
    )["stateMachineArn"]
    rng = random.Random(1)
    for i in range(args.executions):
        order = {
            "orderId": f"ORD-{i:09d}",
            "fail": rng.random() < 0.05,
            "items": [{"sku": f"SKU-{rng.randrange(10**5):05d}", "qty": 1}] * rng.randint(1, 8),
        }
        sfn.start_execution(
            stateMachineArn=sm,
            name=f"order-{i:05d}-{rng.getrandbits(16):04x}",
            input=json.dumps(order),
        )
    while sfn.list_executions(stateMachineArn=sm, statusFilter="RUNNING", maxResults=1)[
        "executions"
    ]:
        time.sleep(0.5)

    reset_cache_tables()
    t0 = time.monotonic()
    call_command("sync", stdout=open(os.devnull, "w"))  # noqa: SIM115
    sync_seconds = time.monotonic() - t0
    cached = Execution.objects.filter(state_machine__arn=sm).count()
    if cached < args.executions:
        raise SystemExit(f"the sync cached {cached} of {args.executions} executions")

    client = pages._client()
    url = pages._list_url({"state_machine": sm})
    api_url = f"/api/executions/?{urlencode({'state_machine': sm})}"
    backend = pages._backend_pid()

    def from_cache(url: str = url) -> tuple[float, float, int]:
        app0, db0 = pages._schedstat("self")[0], pages._schedstat(backend)[0]
        t = time.perf_counter()
        status, size = pages._get(client, url)
        wall = time.perf_counter() - t
        assert status == 200
        cpu = pages._schedstat("self")[0] - app0 + pages._schedstat(backend)[0] - db0
        return wall * 1000, cpu / 1e6, size

    def live() -> tuple[float, float, int]:
        me0, aws0 = pages._schedstat("self")[0], _cpu_ns(server_pid)
        t = time.perf_counter()
        rows = sfn.list_executions(stateMachineArn=sm, maxResults=50)["executions"]
        described = [sfn.describe_execution(executionArn=r["executionArn"]) for r in rows]
        wall = time.perf_counter() - t
        assert len(described) == 50
        cpu = pages._schedstat("self")[0] - me0 + _cpu_ns(server_pid) - aws0
        return wall * 1000, cpu / 1e6, 1 + len(described)

    for _ in range(3):
        from_cache()
        from_cache(api_url)
        live()
    cache_runs, api_runs, live_runs = [], [], []
    for _ in range(args.runs):
        cache_runs.append(from_cache())
        api_runs.append(from_cache(api_url))
        live_runs.append(live())
    cache_ms = summary([r[0] for r in cache_runs])
    live_ms = summary([r[0] for r in live_runs])
    cache_cpu = summary([r[1] for r in cache_runs])
    live_cpu = summary([r[1] for r in live_runs])
    api_ms = summary([r[0] for r in api_runs])
    api_cpu = summary([r[1] for r in api_runs])
    result: dict[str, Any] = {
        "executions at the endpoint": args.executions,
        "rows": 50,
        "runs": args.runs,
        "sync seconds (one manage.py sync)": round(sync_seconds, 1),
        "cache: list page ms": {k: round(v, 1) for k, v in cache_ms.items()},
        "cache: page bytes": cache_runs[-1][2],
        "live: ListExecutions + 50 DescribeExecution ms": {
            k: round(v, 1) for k, v in live_ms.items()
        },
        "live: API calls per run": live_runs[-1][2],
        "ratio live / cache (medians)": round(live_ms["median"] / cache_ms["median"], 1),
        "cpu ms cache (web process + PostgreSQL backend)": round(cache_cpu["median"], 1),
        "cpu ms live (client + endpoint process)": round(live_cpu["median"], 1),
        "ratio by cpu time": round(live_cpu["median"] / cache_cpu["median"], 1),
        # The same 50 rows as JSON from the cache, for scripts: what a
        # client library's caller gets, without the page around them.
        "api: /api/executions/ ms": {k: round(v, 1) for k, v in api_ms.items()},
        "ratio live / api (medians)": round(live_ms["median"] / api_ms["median"], 1),
        "ratio live / api by cpu time": round(live_cpu["median"] / api_cpu["median"], 1),
        # What one live call costs, and how many of them the page costs.
        "live: ms per call (median run / 51 calls)": round(live_ms["median"] / 51, 2),
        "cache page costs as much as N live calls": round(
            cache_ms["median"] / (live_ms["median"] / 51), 1
        ),
        "load average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    report("cache_vs_live", result)


if __name__ == "__main__":
    main()
