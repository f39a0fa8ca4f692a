"""/failures/ over 7 days on the 1,000,000-execution database (issue 14, item 2:
median ≤ 200 ms).

    .venv/bin/python -m bench.seed          # once, if sfnui_bench_1m does not exist yet
    .venv/bin/python -m bench.failures      # ~1 minute
    .venv/bin/python -m bench.failures --runs 50 --window-days 1

The seeded year ends at the seeder's "now", so the window is the 7 days
before the newest failure (a range, `since` and `until`: the same query as
`window=7d`). Timing is bench/pages.py's: Django's test client in-process,
DEBUG off, signed in, Redis as the shared cache; wall time per request and
the CPU time of the web process and its PostgreSQL backend.

A database seeded before migration 0011 has no failing states: the first run
fills them once (the seeder's rule: a failed execution's state is one of its
state machine's steps, a timed-out one its longest step) and VACUUMs the
table, so that the index-only scans see an up-to-date visibility map.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.common import report
from bench.pages import DB_1M, _client, _django, _time


def fill_failed_states() -> int:
    """Give the failures of a database seeded before 0011 their failing state."""
    from django.db import connection

    from executions.models import Execution, StateMachine
    from executions.seed.data import MACHINES

    # The seeder leaves aborted ones without a state (stopped anywhere).
    empty = Execution.objects.filter(status__in=("FAILED", "TIMED_OUT"), failed_state="")
    if not empty.exists():
        return 0
    ids = dict(StateMachine.objects.values_list("name", "id"))
    filled = 0
    with connection.cursor() as cursor:
        for m in MACHINES:
            if m.name not in ids:
                continue
            steps = [s.name for s in m.steps]
            longest = max(m.steps, key=lambda s: s.weight).name
            cursor.execute(
                """
                UPDATE executions_execution
                SET failed_state = CASE
                    WHEN status = 'TIMED_OUT' THEN %s
                    WHEN status = 'FAILED' THEN (%s::text[])[1 + id %% %s]
                    ELSE '' END
                WHERE state_machine_id = %s AND failed_state = ''
                  AND status IN ('FAILED', 'TIMED_OUT')
                """,
                [longest, steps, len(steps), ids[m.name]],
            )
            filled += cursor.rowcount
    if filled:
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE executions_execution")
    return filled


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DB_1M", DB_1M))
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--window-days", type=float, default=7.0)
    args = parser.parse_args()

    _django(args.database_url)
    from django.db.models import Max
    from django.urls import reverse

    from executions.models import FAILURE_STATUSES, Execution
    from executions.reads import failures
    from executions.times import iso_z

    filled = fill_failed_states()
    newest = Execution.objects.filter(status__in=FAILURE_STATUSES).aggregate(last=Max("stop_date"))[
        "last"
    ]
    assert newest is not None, "no failures in this database: seed it first"
    until = newest.replace(microsecond=0) + dt.timedelta(seconds=1)
    since = until - dt.timedelta(days=args.window_days)
    url = f"{reverse('failures')}?{urlencode({'since': iso_z(since), 'until': iso_z(until)})}"
    shown = failures.report(since, until)
    result: dict[str, Any] = {
        "database": args.database_url.rpartition("/")[2],
        "executions": Execution.objects.count(),
        "failures_in_window": shown.total,
        "groups": shown.group_count,
        "groups_shown": len(shown.groups),
        "filled_failed_states": filled,
        "load_before": _load(),
        **_time(_client(), url, args.runs, args.warmup),
        "load_after": _load(),
        "target_median_ms": 200,
    }
    report(f"failures-{args.window_days:g}d", result)


if __name__ == "__main__":
    main()
