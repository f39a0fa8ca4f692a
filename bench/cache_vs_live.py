"""The execution detail page from the cache vs the same page built live (issue 15).

    .venv/bin/python -m bench.cache_vs_live              # 30 runs of each side, ~1 minute
    .venv/bin/python -m bench.cache_vs_live --runs 60

The same page both ways, through the app's own code and templates:

(a) cache: `/executions/<arn>/` of an execution the cache holds;
(b) live: the same URL for the same execution once its row is gone from the
    cache (deleted, with its history events, untimed, before each live
    request), which the app then serves through its own cache-miss path:
    `web/common.execution_or_404` -> the lookup rate limit ->
    `sync/flows.import_execution` (DescribeExecution and the history, each
    call paid from the API budget), then the same view and template. Whatever
    that path calls is counted (the endpoint's /fakeaws/calls before and
    after each request) and nothing else is called.

Both are rendered by Django's test client in this process, signed in, DEBUG
off, PostgreSQL and Redis (as bench/pages.py measures pages). The endpoint
is `python -m fakeaws`, its own process: moto in execute mode, no quotas.
The executions are two of a five-state order pipeline that finished in
moto: one SUCCEEDED, one FAILED (the page then shows the cause and the
failure point). Cache and live requests take turns, `--runs` of each per
execution, after `--warmup` untimed rounds.

Two settings of the endpoint:

1. loopback: moto answers at once (a call costs its HTTP round trip on
   loopback and moto's work, ~2-5 ms). This is the least AWS can cost.
2. latency: every Step Functions call also waits a draw from a lognormal
   distribution with median 30 ms and 95th percentile 80 ms (fakeaws's
   `faults.latency`, seeded, capped at 400 ms). **An assumption**, not a
   measurement: about what the Step Functions API answers in from a nearby
   region (a dashboard in the same region as the state machines answers
   faster; one across an ocean slower). The target (>= 10x) is judged here.

So that the app's own limits do not refuse or slow the bench's lookups,
this process sets SFNUI_LOOKUP_LIMIT=1000000 (the per-user lookups a
minute; default 30), SFNUI_API_SHARE=1 and SFNUI_API_QUOTAS of 1,000,000
tokens refilled at 1,000,000/s for every operation the path calls (the
sync's budget, which each lookup call is paid from). The budget's token is
still taken for each call (one Redis script), as in production. Every
request must answer 200, and every live one must have called
DescribeExecution, or the bench stops.

CPU time (from /proc/<pid>/schedstat and /proc/<pid>/task/*/schedstat), per
request: this process (the web side) and its PostgreSQL backend, for both
sides; for the live side the endpoint process too (moto's work, which AWS
does on its own machines), reported apart. On a loaded machine the wall
times include waiting for a CPU; the CPU times do not.

The list page is not compared as a page: the app has no code that builds a
list page live (the list reads only the cache), so its live equivalent (one
ListExecutions of the page's rows, rendered through the same templates)
would be new code written for the bench, not the app's own path. Only a
lower bound is reported: such a page would make at least one
ListExecutions(maxResults=50), so live / cache is at least that call alone
(through executions/aws.py) over the cached list page of the same 50 rows.
The earlier version of this bench compared the list page from the cache with
ListExecutions + 50 DescribeExecution calls made by boto3 and rendered
nothing: 10.7x, an unfair comparison (calls the page does not need on one
side, no HTML on the other), which issue 15 found and this replaces.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import ROOT, fakeaws_process, report, reset_cache_tables, summary

DATABASE_URL = "postgres://postgres@127.0.0.1:5432/sfnui_bench_live"
# The assumption for the second setting: seconds, per Step Functions call.
LATENCY = {"p50": 0.030, "p95": 0.080, "seed": 15}
# Rows of the list page (its page size).
LIST_ROWS = 50
# Operations a cache miss may call, whose budget is lifted (see above).
OPERATIONS = (
    "ListStateMachines",
    "DescribeStateMachine",
    "DescribeStateMachineForExecution",
    "ListExecutions",
    "DescribeExecution",
    "GetExecutionHistory",
    "ListMapRuns",
    "DescribeMapRun",
)
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
        "Declined": {"Type": "Fail", "Error": "Payment.Declined",
                     "Cause": "card declined: the issuer refused the charge (code 05)"},
    },
}  # fmt: skip


def _process_cpu_ms(pid: int | str) -> float:
    """CPU time of a whole process so far, threads that have ended included
    (utime + stime of /proc/<pid>/stat, in clock ticks: 10 ms here). The
    endpoint serves each request on a thread of its own, which is gone (with
    its /proc/<pid>/task/*/schedstat) by the time a request's CPU is read, so
    the endpoint's CPU is read this way, over many requests."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks * 1000 / os.sysconf("SC_CLK_TCK")


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


def _control(endpoint: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(  # noqa: S310 (our own loopback endpoint)
        endpoint + path,
        data=json.dumps(body or {}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.loads(response.read() or b"{}")


def _calls(endpoint: str) -> tuple[Counter[str], float]:
    """The endpoint's calls so far by operation, and the seconds of injected
    latency it has slept."""
    answer = _control(endpoint, "/fakeaws/calls")
    return Counter(answer["calls"]), float(answer["latency_seconds"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30, help="timed requests of each side")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DB_LIVE", DATABASE_URL))
    args = parser.parse_args()

    load_before = os.getloadavg()
    with fakeaws_process() as endpoint:
        result = _measure(args, endpoint, _child("fakeaws"))
    # Others' uncommitted changes show as "-dirty": the pages measured are
    # the working tree's.
    result["tree"] = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    result["load average before (1, 5, 15 min)"] = " ".join(f"{x:.2f}" for x in load_before)
    result["load average after (1, 5, 15 min)"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    report("cache_vs_live", result)


def _environment(endpoint: str) -> dict[str, str]:
    """What this process sets before Django starts (see the module docstring)."""
    return {
        "SFNUI_AWS_ENDPOINT_URL": endpoint,
        "SFNUI_REGIONS": "us-east-1",
        "SFNUI_LOOKUP_LIMIT": "1000000",
        "SFNUI_API_SHARE": "1",
        "SFNUI_API_QUOTAS": ",".join(f"{op}=1000000/1000000" for op in OPERATIONS),
    }


def _measure(args: argparse.Namespace, endpoint: str, server_pid: int) -> dict[str, Any]:
    from bench import pages

    env = _environment(endpoint)
    os.environ.update(env)
    pages._django(args.database_url)
    import boto3
    from botocore.config import Config
    from django.conf import settings
    from django.core.management import call_command
    from django.urls import reverse

    from executions.models import Execution

    assert settings.SFNUI_LOOKUP_LIMIT == 1_000_000
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
    arns: dict[str, str] = {}
    for kind, fail in (("succeeded", False), ("failed", True)):
        order = {
            "orderId": f"ORD-{rng.randrange(10**9):09d}",
            "fail": fail,
            "customer": {"id": f"C-{rng.randrange(10**6):06d}", "tier": "gold"},
            "items": [
                {"sku": f"SKU-{rng.randrange(10**5):05d}", "qty": rng.randint(1, 3)}
                for _ in range(6)
            ],
        }
        arns[kind] = sfn.start_execution(
            stateMachineArn=sm,
            name=f"order-{kind}-{rng.getrandbits(16):04x}",
            input=json.dumps(order),
        )["executionArn"]
    # More rows for the list page's lower bound (below): 50 a page.
    for i in range(LIST_ROWS + 10):
        sfn.start_execution(
            stateMachineArn=sm,
            name=f"order-{i:05d}-{rng.getrandbits(16):04x}",
            input=json.dumps({"orderId": f"ORD-{i:09d}", "fail": rng.random() < 0.05}),
        )
    while sfn.list_executions(stateMachineArn=sm, statusFilter="RUNNING", maxResults=1)[
        "executions"
    ]:
        time.sleep(0.2)
    deadline = time.monotonic() + 60
    while any(sfn.describe_execution(executionArn=a)["status"] == "RUNNING" for a in arns.values()):
        if time.monotonic() > deadline:
            raise SystemExit("the bench's executions did not finish in moto within 60 s")
        time.sleep(0.2)

    # The cache as a running dashboard has it: the state machine and its
    # executions synced (one manage.py sync).
    reset_cache_tables()
    call_command("sync", stdout=open(os.devnull, "w"))  # noqa: SIM115
    for kind, arn in arns.items():
        ex = Execution.objects.filter(arn=arn).first()
        if ex is None or not ex.history_complete:
            raise SystemExit(f"the sync did not cache the {kind} execution with its history")

    client = pages._client()
    backend = pages._backend_pid()

    def timed(url: str) -> dict[str, Any]:
        """One request: wall ms, CPU ms (web process, PostgreSQL backend;
        the endpoint's, including the bench's own two /fakeaws/calls, in
        10 ms ticks), the AWS calls it made, bytes."""
        aws0 = _process_cpu_ms(server_pid)
        before, waited0 = _calls(endpoint)
        web0, db0 = pages._schedstat("self")[0], pages._schedstat(backend)[0]
        t = time.perf_counter()
        status, size = pages._get(client, url)
        wall = time.perf_counter() - t
        web1, db1 = pages._schedstat("self")[0], pages._schedstat(backend)[0]
        after, waited1 = _calls(endpoint)
        calls = after - before
        aws1 = _process_cpu_ms(server_pid)
        if status != 200:
            raise SystemExit(f"{url} answered {status}")
        return {
            "ms": wall * 1000,
            "web_cpu": (web1 - web0) / 1e6,
            "db_cpu": (db1 - db0) / 1e6,
            "aws_cpu": aws1 - aws0,
            "wait": (waited1 - waited0) * 1000,
            "calls": calls,
            "bytes": size,
        }

    def cached(arn: str) -> dict[str, Any]:
        if not Execution.objects.filter(arn=arn, history_complete=True).exists():
            raise SystemExit(f"{arn} is not in the cache for its cached run")
        run = timed(reverse("execution_detail", args=[arn]))
        if run["calls"]:
            raise SystemExit(f"the cached page called AWS: {dict(run['calls'])}")
        return run

    def live(arn: str) -> dict[str, Any]:
        # Untimed: the execution leaves the cache (its events and anything
        # else that hangs on it go with it), so the request is a real miss.
        Execution.objects.filter(arn=arn).delete()
        run = timed(reverse("execution_detail", args=[arn]))
        if not run["calls"]["DescribeExecution"]:
            raise SystemExit(f"the live request made no DescribeExecution: {dict(run['calls'])}")
        if not Execution.objects.filter(arn=arn).exists():
            raise SystemExit("the live request did not store the execution it looked up")
        return run

    settings_result: dict[str, Any] = {}
    for setting, latency in (("loopback", None), ("latency p50 30 ms, p95 80 ms", LATENCY)):
        _control(endpoint, "/fakeaws/config", {"faults": {"latency": latency} if latency else {}})
        settings_result[setting] = {
            kind: _compare(arn, cached, live, args.runs, args.warmup) for kind, arn in arns.items()
        }
        settings_result[setting]["list page: a lower bound only"] = _list_bound(
            sm, timed, args.runs, args.warmup
        )
    _control(endpoint, "/fakeaws/config", {"faults": {}})

    return {
        "page": "/executions/<arn>/ (execution detail), the same execution both ways",
        "runs of each side per execution": args.runs,
        "latency assumption (seconds per Step Functions call)": LATENCY,
        "environment set by the bench": {
            k: v for k, v in env.items() if k != "SFNUI_AWS_ENDPOINT_URL"
        },
        "results": settings_result,
        "headline: ratio live / cache, medians (succeeded, failed)": {
            setting: [by_kind[k]["ratio live / cache (medians)"] for k in arns]
            for setting, by_kind in settings_result.items()
        },
    }


def _list_bound(
    sm: str, timed: Callable[[str], dict[str, Any]], runs: int, warmup: int
) -> dict[str, Any]:
    """The list page has no live path in the app to compare with (see the
    module docstring). What can be said fairly: a live list page of these 50
    rows would make at least one ListExecutions(maxResults=50), so it cannot
    take less than that call alone. The call is made through the app's own
    executions/aws.py (client, deadlines, budget), in turns with the cached
    list page (the state machine's executions, 50 rows)."""
    from bench import pages
    from executions import aws

    def list_call() -> float:
        t = time.perf_counter()
        rows = next(aws.list_executions(sm, page_size=LIST_ROWS))
        wall = time.perf_counter() - t
        if len(rows) != LIST_ROWS:
            raise SystemExit(f"ListExecutions answered {len(rows)} rows, not {LIST_ROWS}")
        return wall * 1000

    url = pages._list_url({"state_machine": sm})
    for _ in range(warmup):
        timed(url)
        list_call()
    page_ms, call_ms = [], []
    for _ in range(runs):
        run = timed(url)
        if run["calls"]:
            raise SystemExit(f"the cached list page called AWS: {dict(run['calls'])}")
        page_ms.append(run["ms"])
        call_ms.append(list_call())
    page, call = summary(page_ms), summary(call_ms)
    return {
        "cache: list page, 50 rows, ms": {k: round(v, 1) for k, v in page.items() if k != "n"},
        "ListExecutions(maxResults=50) alone, ms": {
            k: round(v, 1) for k, v in call.items() if k != "n"
        },
        "ratio live / cache is at least (medians: the call alone / the cached page)": round(
            call["median"] / page["median"], 2
        ),
    }


def _compare(
    arn: str,
    cached: Callable[[str], dict[str, Any]],
    live: Callable[[str], dict[str, Any]],
    runs: int,
    warmup: int,
) -> dict[str, Any]:
    for _ in range(warmup):
        cached(arn)
        live(arn)
    cache_runs, live_runs = [], []
    for _ in range(runs):
        # Taking turns, so that a change in the machine's load hits both.
        cache_runs.append(cached(arn))
        live_runs.append(live(arn))

    def ms(values: list[float]) -> dict[str, float]:
        return {k: round(v, 1) for k, v in summary(values).items() if k != "n"}

    def median(runs: list[dict[str, Any]], key: str) -> float:
        return float(summary([r[key] for r in runs])["median"])

    calls: Counter[str] = Counter()
    for r in live_runs:
        calls.update(r["calls"])
    cache_ms, live_ms = ms([r["ms"] for r in cache_runs]), ms([r["ms"] for r in live_runs])
    cache_cpu = median(cache_runs, "web_cpu") + median(cache_runs, "db_cpu")
    live_cpu = median(live_runs, "web_cpu") + median(live_runs, "db_cpu")
    # The endpoint's CPU is read in 10 ms ticks: a mean over the runs, less
    # what the bench's own /fakeaws/calls requests cost it (the cache side
    # makes those and nothing else).
    live_aws_cpu = max(
        0.0,
        (sum(r["aws_cpu"] for r in live_runs) - sum(r["aws_cpu"] for r in cache_runs)) / runs,
    )
    # What the run would take on an idle machine, as bench.pages's "idle":
    # the CPU each side cost, plus (live) the latency the endpoint slept.
    # Leaves out what a process pays to be scheduled and Redis's CPU.
    cache_idle = summary([min(r["web_cpu"] + r["db_cpu"], r["ms"]) for r in cache_runs])
    live_idle = summary([r["web_cpu"] + r["db_cpu"] + r["wait"] for r in live_runs])
    live_idle_median = live_idle["median"] + live_aws_cpu
    return {
        "cache ms": cache_ms,
        "live ms": live_ms,
        "ratio live / cache (medians)": round(live_ms["median"] / cache_ms["median"], 1),
        "ratio live / cache (p95s)": round(live_ms["p95"] / cache_ms["p95"], 1),
        "live: injected AWS latency slept per request, ms": ms([r["wait"] for r in live_runs]),
        "live: the rest (wall - that latency), ms": ms([r["ms"] - r["wait"] for r in live_runs]),
        "idle estimate, median ms (cache: web + db cpu; live: + endpoint cpu + latency)": [
            round(cache_idle["median"], 1),
            round(live_idle_median, 1),
        ],
        "idle estimate ratio live / cache": round(live_idle_median / cache_idle["median"], 1),
        "live: AWS calls per request": {op: n / len(live_runs) for op, n in sorted(calls.items())},
        "cache: AWS calls per request": 0,
        "cpu ms cache (web + PostgreSQL), median": {
            "web": round(median(cache_runs, "web_cpu"), 1),
            "db": round(median(cache_runs, "db_cpu"), 1),
        },
        "cpu ms live (web + PostgreSQL), median": {
            "web": round(median(live_runs, "web_cpu"), 1),
            "db": round(median(live_runs, "db_cpu"), 1),
        },
        "cpu ms live, the endpoint (moto: AWS's side), mean": round(live_aws_cpu, 1),
        "ratio by the dashboard's cpu time (live / cache)": round(live_cpu / cache_cpu, 1),
        "ratio by cpu time with the endpoint's (live + moto) / cache": round(
            (live_cpu + live_aws_cpu) / cache_cpu, 1
        ),
        "bytes (cache, live)": [cache_runs[-1]["bytes"], live_runs[-1]["bytes"]],
    }


if __name__ == "__main__":
    main()
