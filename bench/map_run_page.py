"""The Map Run page with 10,000 child executions, on PostgreSQL (issue 13:
median <= 100 ms).

    .venv/bin/python -m bench.map_run_page              # ~1 minute
    .venv/bin/python -m bench.map_run_page --runs 50

It makes (again, each run) a parent execution, its Map Run (item counts as
DescribeMapRun gives them) and 10,000 children in the cache (9,000
succeeded, 300 failed, 700 running, a start every 50 ms), as the sync would
store them. Then, as bench/pages.py times pages (Django's test client
in-process, production settings, signed in; wall time and the CPU time of
the app and its PostgreSQL backend), it times:

- `/map-runs/<arn>/`: the first page (newest 100 children, counts per status);
- `/map-runs/<arn>/?status=FAILED`: the failed children;
- the same page deep in the list (a keyset cursor 5,000 children down).

The database is its own (`BENCH_DB_MAP_RUN`, default sfnui_bench_maprun).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from typing import Any

from bench.common import report

DB = "postgres://postgres@127.0.0.1:5432/sfnui_bench_maprun"
TARGET_MS = 100
ACCOUNT = "123456789012"
REGION = "us-east-1"
CHILDREN = 10_000


def make_run(children: int = CHILDREN) -> tuple[str, str]:
    """The parent, its Map Run and the children (made again each run):
    (Map Run ARN, a cursor 5,000 children down)."""
    from executions.models import Execution, MapRun, StateMachine

    prefix = f"arn:aws:states:{REGION}:{ACCOUNT}"
    StateMachine.objects.filter(name__startswith="bench-map").delete()
    parent_sm = StateMachine.objects.create(
        arn=f"{prefix}:stateMachine:bench-map", name="bench-map", region=REGION, account=ACCOUNT
    )
    child_sm = StateMachine.objects.create(
        arn=f"{prefix}:stateMachine:bench-map/Items",
        name="bench-map/Items",
        region=REGION,
        account=ACCOUNT,
    )
    t0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
    parent = Execution.objects.create(
        arn=f"{prefix}:execution:bench-map:run-1",
        name="run-1",
        state_machine=parent_sm,
        status="RUNNING",
        start_date=t0,
        described_at=t0,
        needs_describe=False,
    )
    arn = f"{prefix}:mapRun:bench-map/Items:7d1c5a5e-0000-4000-8000-000000000001"
    counts = {"succeeded": 9000, "failed": 300, "running": 700}
    run = MapRun.objects.create(
        arn=arn,
        execution=parent,
        status="RUNNING",
        start_date=t0,
        max_concurrency=1000,
        tolerated_failure_percentage=5,
        item_counts={
            "pending": 0,
            "running": 700,
            "succeeded": 9000,
            "failed": 300,
            "timedOut": 0,
            "aborted": 0,
            "total": children,
            "resultsWritten": 9000,
        },
        execution_counts={},
        described_at=dt.datetime.now(dt.UTC),
    )
    statuses = ["SUCCEEDED"] * counts["succeeded"] + ["FAILED"] * counts["failed"]
    statuses += ["RUNNING"] * (children - len(statuses))
    rows = []
    for i in range(children):
        start = t0 + dt.timedelta(milliseconds=50 * i)
        status = statuses[(i * 7919) % children]  # spread over time
        rows.append(
            Execution(
                arn=f"{prefix}:execution:bench-map/Items:{i:08d}-child",
                name=f"{i:08d}-child",
                state_machine=child_sm,
                status=status,
                start_date=start,
                stop_date=None if status == "RUNNING" else start + dt.timedelta(seconds=3),
                map_run_arn=run.arn,
                needs_describe=False,
                described_at=start,
                history_complete=status != "RUNNING",
            )
        )
    Execution.objects.bulk_create(rows, batch_size=2000)
    middle = Execution.objects.filter(map_run_arn=arn).order_by("-start_date", "-id")[children // 2]
    micros = int((middle.start_date - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).total_seconds())
    cursor = f"{micros * 1_000_000 + middle.start_date.microsecond}-{middle.pk}"
    from django.db import connection

    with connection.cursor() as c:
        c.execute("ANALYZE executions_execution")
    return arn, cursor


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DB_MAP_RUN", DB))
    args = parser.parse_args()
    if args.runs < 20:
        parser.error("--runs: at least 20 (a median of fewer says little)")

    from bench.pages import _client, _django, _time

    _django(args.database_url)
    from django.urls import reverse

    arn, cursor = make_run()
    client = _client()
    page = reverse("map_run_detail", args=[arn])
    results: dict[str, dict[str, Any]] = {
        "first_page": _time(client, page, args.runs, args.warmup),
        "failed": _time(client, page + "?status=FAILED", args.runs, args.warmup),
        "deep_page": _time(client, page + f"?cursor={cursor}", args.runs, args.warmup),
    }
    html = client.get(page, secure=True).content.decode()
    result = {
        "children": CHILDREN,
        "page_lists_children": html.count('class="name wrap-anywhere"'),
        "target_median_ms": TARGET_MS,
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        **{
            name: {
                k: r[k]
                for k in (
                    "median_ms",
                    "p95_ms",
                    "idle_median_ms",
                    "queries",
                    "slowest_query_ms",
                    "bytes",
                    "runs",
                )
            }
            for name, r in results.items()
        },
        "met": all(r["median_ms"] <= TARGET_MS for r in results.values()),
    }
    report("map_run_page", result)


if __name__ == "__main__":
    main()
